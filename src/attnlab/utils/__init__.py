"""Run plumbing shared by train and eval: instantiation, logging set-up, run naming, config printing."""
