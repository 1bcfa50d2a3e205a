"""uisrnn_jax: UIS-RNN speaker diarization as a functional JAX library."""

__version__ = '0.1.0'
