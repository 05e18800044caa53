"""Where and how a run executes: device and precision, several processes (DDP), meters, speed (MFU),
progress bars, run-size profiles, and the programs the package starts."""
