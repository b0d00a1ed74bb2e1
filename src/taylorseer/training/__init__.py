"""Training scripts of the bundled models (offline, CPU, reproducible from a seed).

python -m taylorseer.training.classifier
python -m taylorseer.training.dit_digits
python -m taylorseer.training.flux_digits
"""
