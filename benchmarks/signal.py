"""Signal checks of the workshop search: ``python benchmarks/signal.py --dataset D --profile workshop
--seed S``. The code is in ``signal_check.py`` (see its docstring); this file only launches it.

Its name is also the standard library's ``signal``: a sibling script run from this folder has the folder
first on ``sys.path``, so when this file is imported as ``signal`` it hands the importer the real module.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
import sysconfig
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]  # keep the standard library's signal
    runpy.run_path(str(here / "signal_check.py"), run_name="__main__")
else:  # imported as the standard library's ``signal``
    _spec = importlib.util.spec_from_file_location("signal", Path(sysconfig.get_paths()["stdlib"]) / "signal.py")
    _real = importlib.util.module_from_spec(_spec)
    sys.modules["signal"] = _real
    _spec.loader.exec_module(_real)
    globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})
