"""What every model loader shares: where a named model's files are, and freezing a loaded model.

``venomkit.models.resolve`` turns a model spec (``zoo:NAME``, a folder, a cached hub id) into a
local folder; ``venomkit.models.freeze`` freezes modules for good (``freeze``) or for the span of
an attack (``frozen_eval``). The package sits below every package that loads or runs models
(encoders, generators, victims, attacks, the zoo's builders) and imports none of them.
"""
