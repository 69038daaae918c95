"""The dataset on disk: the manifest, the records it holds, reason codes and totals (imports nothing above it)."""
