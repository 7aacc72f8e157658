"""The GPU check (``make gpu-check``, ``bench/gpu_check.py``): one command that, on a lent GPU
machine, installs fi-campaign beside the machine's own PyTorch, builds fi-campaign's NVBit tool,
verifies the SASS path step by step and measures GPU speed, and that rehearses every step that
needs no GPU on the CPU machine (``make gpu-check DRY=1``).

- ``plan``: the steps, their order, time caps and what each needs;
- ``runner``: runs each step in its own process within the time left, and writes the summary;
- ``steps``: the entry of one step's process; ``context`` what every step shares;
- ``prepare``, ``sass``, ``speed``: what the steps do (without a GPU; the SASS path; speed);
- ``wheels``: the wheels that travel with the working tree, and installing from them;
- ``toolrun``: running a program directly under the tool's profiler or injector.
"""
