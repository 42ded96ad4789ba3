"""The alignment stage: losses that pull translations together, and what they align."""
