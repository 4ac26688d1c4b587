"""venomkit: red-teaming multimodal recommender systems on raw inputs."""

__version__ = "0.1.0"
