"""pytest-parslflow: workflow-aware testing of Parsl workflows.

Importing this package must stay cheap: it does not import Parsl.
"""

from pytest_parslflow.settings import ParslSettings

__version__ = "0.1.0"
__all__ = ["ParslSettings", "__version__"]
