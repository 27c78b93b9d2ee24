"""Imported last by the local workers' forkserver (``builders.executors``): ``gc.freeze()``, so that what
preloading created (the modules, the builder) is left out of the cyclic garbage collector's scans in every
worker forked from it. A build allocates many short-lived objects (rows, prompts), which trigger collections
that would otherwise walk every long-lived object each time (about a fifth of the render stage's time)."""

import gc

gc.freeze()
