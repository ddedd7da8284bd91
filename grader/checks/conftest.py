"""Fixtures every check receives: the submission (sandboxed) and the reference (in-process)."""
import pytest


@pytest.fixture(scope="session")
def grading(request):
    from grader.run import COLLECTOR
    plugin = request.config.stash.get(COLLECTOR, None)
    if plugin is None:
        pytest.exit("the checks run through `python -m grader`, not plain pytest", returncode=2)
    return plugin


@pytest.fixture(scope="session")
def sub(grading):
    return grading.submission


@pytest.fixture(scope="session")
def ref(grading):
    if grading.reference is None:
        pytest.skip("no reference implementation here")
    return grading.reference


@pytest.fixture
def g(request):
    """A generator seeded by the check's name: the same inputs on every run."""
    from grader.harness import seeded
    return seeded(request.node.name)
