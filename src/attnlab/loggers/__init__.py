"""Lightning loggers adapted to how attnlab runs (resumes into the same run dir, DDP spawn)."""
