"""What a run reports: metrics.jsonl and the progress line (run_log), TensorBoard
scalars (event_file), charts (plots) and skeleton/embedding pictures (pictures)."""
