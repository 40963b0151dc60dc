"""Suite-wide settings.

The tests run tiny maps where intra-op threads cost more than they save (on two
shared cores the convattn tests took 194 s with default threads, 17 s with one), so
the test process uses one thread. Benchmarks set their own thread counts.
"""

import torch

torch.set_num_threads(1)
