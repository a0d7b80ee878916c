"""Local stack: the three Google Cloud emulators (Pub/Sub, Firestore, BigQuery) as child processes."""
