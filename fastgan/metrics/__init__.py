"""Generative-model metrics: exact Fréchet distance, streaming feature statistics, FID, IS and KID."""
from . import inception as inception  # fastgan.metrics.inception, without importing it by name
from .fid import FrechetInceptionDistance
from .frechet import FrechetReference, frechet_distance, sqrtm_psd, trace_sqrt_product
from .inception_score import InceptionScore
from .kid import KernelInceptionDistance, mmd2_unbiased
from .statistics import FeatureStatistics, load_statistics, save_statistics

__all__ = ["FeatureStatistics", "FrechetInceptionDistance", "FrechetReference", "InceptionScore",
           "KernelInceptionDistance", "frechet_distance", "load_statistics", "mmd2_unbiased", "save_statistics",
           "sqrtm_psd", "trace_sqrt_product"]
