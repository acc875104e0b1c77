"""Online backups and periodic snapshots of the SQLite store: a consistent copy taken on a
reader connection while the server commits (`manifest` says what a complete copy is,
`location` is where copies go: a local directory or S3-compatible storage, `runner` takes them
one at a time for the admin API and on the `[worker.snapshots]` schedule, `restore` prepares a
data directory from one)."""
