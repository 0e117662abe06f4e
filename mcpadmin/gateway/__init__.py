"""The agent data plane (async)."""

import importlib.util
import os
import sys

# Interim, until the old Flask view ``mcpadmin/gateway.py`` is removed (issue 20): this package
# shadows that module (a package wins over a module of the same name), so ``create_app``'s
# ``gateway.bp`` is loaded from that file here, on first use. Delete this with the file.
_OLD_VIEW = os.path.join(os.path.dirname(os.path.dirname(__file__)), "gateway.py")


def __getattr__(name):
    if name != "bp" or not os.path.exists(_OLD_VIEW):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    spec = importlib.util.spec_from_file_location("mcpadmin._gateway_view", _OLD_VIEW)
    view = sys.modules.get(spec.name)
    if view is None:
        view = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = view
        spec.loader.exec_module(view)
    return view.bp
