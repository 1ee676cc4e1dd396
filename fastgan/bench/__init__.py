"""The benchmark harness behind ``fastgan bench``, one module a role. Each imports only modules above it here:

- :mod:`.environment`: what a run ran on (versions, GPU, CUDA extension build, datasheet and copy bandwidth); also
  what ``fastgan info`` prints;
- :mod:`.report`: results.json, results.md, results.png and the closing lines, from a run's report dict;
- :mod:`.runner`: :class:`~.runner.Case`, the correctness check's outcome, timing (:func:`~.runner.time_ms`), the
  time budget, :func:`~.runner.run`;
- :mod:`.suites.common`: what the suites share (backend availability, one set of tensors at a time, the
  check against a reference, targets);
- :mod:`.suites`: the suites (``spectral_norm``, ``cond_batch_norm``, ``fid``, ``host_overhead``) and their registry;
- :mod:`.command`: ``fastgan bench`` (its options and its run), used by :mod:`fastgan.cli`.

This file imports none of them, so that importing one module of the harness imports only what it needs.
"""
