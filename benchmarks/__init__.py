"""The asv suite (``bench_linear``) and the scripts that measure what its settings rest on.

asv imports this package first, then every module in it, in its forkserver: nothing here
may initialise CUDA before the forks.  torch answers ``torch.cuda.is_available()`` from NVML
(no CUDA context) when this is set before torch is imported.
"""

import os

os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
