"""Every model exported by recfb.models runs the contract suite (the README says so): some
test class derived from RecommenderContract builds it in ``make_model``. Read from the test
sources (AST), so that nothing is imported or fitted twice."""
import ast
from pathlib import Path

import recfb.models
from recfb.models import Recommender

TESTS = Path(__file__).resolve().parents[1]


def _contract_models() -> dict:
    """class name built by make_model -> the contract test classes that build it."""
    built = {}
    for path in TESTS.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(isinstance(b, ast.Name) and b.id == "RecommenderContract" for b in node.bases):
                continue
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "make_model":
                    for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return)):
                        if isinstance(ret.value, ast.Call) and isinstance(ret.value.func, ast.Name):
                            built.setdefault(ret.value.func.id, []).append(f"{path.name}::{node.name}")
    return built


def test_every_exported_model_runs_the_contract_suite():
    exported = {name for name in recfb.models.__all__
                if isinstance(getattr(recfb.models, name), type) and issubclass(getattr(recfb.models, name), Recommender)
                and name != "Recommender"}
    built = _contract_models()
    assert {"SASRec", "gSASRec", "BERT4Rec", "MF", "EASE"} <= exported  # the scan sees the real list
    missing = sorted(exported - set(built))
    assert not missing, f"models without a RecommenderContract test class: {missing}"
