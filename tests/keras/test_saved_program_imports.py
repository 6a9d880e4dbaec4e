"""A `.keras` file's embedded program may import only the files embedded with it.

Loading a model from its configuration recompiles the saved source. An `import` of a path
that was not saved with it (an absolute path, `..`, a device such as /dev/zero) must be an
`import-error` that reads nothing from disk, not a read of whatever the path names.
"""

from __future__ import annotations

import pytest

import graphdsl
from graphdsl import GraphdslError
from graphdsl.backends.keras.model import GraphModel

pytestmark = pytest.mark.keras

SOURCE = """
model Small {
    input x : float32[B, 4]
    inference output y = Dense(2)(x)
}
"""


def test_a_saved_program_round_trips() -> None:
    model = graphdsl.compile(SOURCE, backend="keras")
    rebuilt = GraphModel.from_config(model.get_config())
    assert [v.shape for v in rebuilt.weights] == [v.shape for v in model.weights]


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/hostname", "../../outside.gdl"])
def test_a_planted_import_in_a_saved_program_reads_nothing(tmp_path, target: str) -> None:  # type: ignore[no-untyped-def]
    config = graphdsl.compile(SOURCE, backend="keras").get_config()
    config["source"] = f'import "{target}" as planted\n' + config["source"]
    with pytest.raises(GraphdslError) as caught:
        GraphModel.from_config(config)
    codes = {d.code for d in caught.value.diagnostics if d.is_error}
    assert codes == {"import-error"}
    assert "not one of the files saved" in caught.value.render(color=False)
