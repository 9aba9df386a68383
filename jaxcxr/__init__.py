"""jaxcxr: chest X-ray classifiers by transfer learning in JAX/Flax (see README.md).

Importing the package switches on JAX's persistent compilation cache in a per-user directory
(:mod:`jaxcxr.compile_cache`; ``JAXCXR_COMPILATION_CACHE=0`` turns it off).
"""

from jaxcxr import compile_cache as _compile_cache

_compile_cache.enable()
