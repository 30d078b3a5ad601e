"""The cron ticker service: emits one RunJob per (job, slot) (see the ticker issue)."""
