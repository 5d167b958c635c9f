"""dvgan: disentangling factors of variation with adversarial training (Mathieu et al., NIPS 2016)."""
__version__ = "0.1.0"
