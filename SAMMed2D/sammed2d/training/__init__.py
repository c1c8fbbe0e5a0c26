"""Fine-tuning SAM-Med2D and LiteMedSAM the way the paper trains: datasets, prompts, loss and the trainer."""
