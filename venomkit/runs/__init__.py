"""Running things: recipes in, run folders out, on one process or many (``accelerate launch``).

* ``recipe``      the nested run schema, THE recipe loader (run / attack / defense recipes), overrides
* ``plan``        settings (victim x attack) and jobs (a setting x a batch of targets), sharding
* ``store``       the run folder: target records (done markers), merged tables, resume, refusal
* ``fingerprint`` what identifies a run's results (settings, data, models, code)
* ``victims``     trained / loaded / hardened victims, cached by content hash
* ``collectors``  metric collectors registered by name
* ``shop``        the shop's image pipeline (png, jpeg:Q, resize:S)
* ``engine``      the run itself; ``cli`` ``venomkit run``; ``report`` ``report.html``

Python::

    from venomkit.runs import RunFlags, execute, load_run

    run = load_run("attacks/pgd.yaml", ["steps=5"], RunFlags(victim="runs/vbpr", data="toyshop", targets=20))
    summary = execute(run, "runs/pgd")
"""

from venomkit.runs.engine import execute
from venomkit.runs.recipe import RecipeError, RunFlags, load_run

__all__ = ["RecipeError", "RunFlags", "execute", "load_run"]
