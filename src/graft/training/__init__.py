"""Transfer learning: features computed once, a head trained on them, optional fine-tuning."""
