// Placeholder until the multi-process harness lands.
