"""What every injection runs: the campaign's images, the model in this process (``model``),
the workload program that process-isolated and NVBitFI runs start (``program``), and how one
such process is started, timed out and judged (``process``). Light on purpose: importing
the package imports no torch."""
