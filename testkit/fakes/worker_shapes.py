"""What real RunPod workers and RunPod itself put in their answers, for tests that must use real shapes.

- RUNPOD_DOCS_HEALTH: the `GET /v2/{endpointId}/health` example of RunPod's docs (newer shape, every worker state).
- TORCH_OOM_TRACEBACK: a plain-string `error` from a worker that lets a torch out-of-memory error escape.
- runpod_python_error(): the JSON string runpod-python's `serverless.start` reports when a handler raises
  (`json.dumps` of error_type / error_message / error_traceback / hostname / worker_id / runpod_version).
"""

from __future__ import annotations

import json

RUNPOD_DOCS_HEALTH = {"jobs": {"completed": 120, "failed": 7, "inProgress": 2, "inQueue": 14, "retried": 3},
                      "workers": {"idle": 1, "initializing": 0, "ready": 1, "running": 2, "throttled": 0,
                                  "unhealthy": 1}}

TORCH_OOM_LAST_LINE = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.65 GiB "
    "of which 1.12 GiB is free. Process 48213 has 22.52 GiB memory in use. Of the allocated memory 21.87 GiB is "
    "allocated by PyTorch, and 312.41 MiB is reserved by PyTorch but unallocated. If reserved but unallocated "
    "memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
    "documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")

TORCH_OOM_TRACEBACK = """Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/runpod/serverless/modules/rp_job.py", line 164, in run_job
    handler_return = handler(job)
                     ^^^^^^^^^^^^
  File "/app/handler.py", line 58, in handler
    images = pipe(prompt=job_input["prompt"], num_inference_steps=steps, height=1536, width=1536).images
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/torch/utils/_contextlib.py", line 116, in decorate_context
    return func(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/diffusers/pipelines/stable_diffusion_xl/\
pipeline_stable_diffusion_xl.py", line 1216, in __call__
    noise_pred = self.unet(
                 ^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.11/site-packages/diffusers/models/attention_processor.py", line 2285, in __call__
    hidden_states = F.scaled_dot_product_attention(
                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
""" + TORCH_OOM_LAST_LINE + "\n"

VALUE_ERROR_TRACEBACK = """Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/runpod/serverless/modules/rp_job.py", line 164, in run_job
    handler_return = handler(job)
                     ^^^^^^^^^^^^
  File "/app/handler.py", line 41, in handler
    steps = int(job_input.get("steps", 30))
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
ValueError: invalid literal for int() with base 10: 'thirty'
"""

KEYERROR_TRACEBACK = """Traceback (most recent call last):
  File "/usr/local/lib/python3.11/site-packages/runpod/serverless/modules/rp_job.py", line 164, in run_job
    handler_return = handler(job)
                     ^^^^^^^^^^^^
  File "/app/handler.py", line 22, in handler
    prompt = job["input"]["prompt"]
             ~~~~~~~~~~~~^^^^^^^^^^
KeyError: 'prompt'
"""


def runpod_python_error(error_type: str = "<class 'KeyError'>", message: str = "'prompt'",
                        traceback: str = KEYERROR_TRACEBACK) -> str:
    """The `error` string runpod-python reports for a handler that raised."""
    return json.dumps({"error_type": error_type, "error_message": message, "error_traceback": traceback,
                       "hostname": "p7k2x9m4qz1h-64410d5e", "worker_id": "p7k2x9m4qz1h",
                       "runpod_version": "1.7.9"})


__all__ = ["KEYERROR_TRACEBACK", "RUNPOD_DOCS_HEALTH", "TORCH_OOM_LAST_LINE", "TORCH_OOM_TRACEBACK",
           "VALUE_ERROR_TRACEBACK", "runpod_python_error"]
