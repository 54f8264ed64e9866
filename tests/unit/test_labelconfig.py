"""Label config parsing: what labelloop serves, and the errors that name the offending tag."""

import pytest

from backend.labelstudio.families import family_of
from backend.labelstudio.labelconfig import UnsupportedConfig, parse_label_config
from backend.labelstudio.tasktypes import MultiControlTask

TEXT = """<View><Text name="text" value="$review"/>
<Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>"""
IMAGE_MULTI = """<View><Image name="img" value="$image"/>
<Choices name="tags" toName="img" choice="multiple"><Choice value="cat"/><Choice value="dog"/>
<Choice value="car"/></Choices></View>"""


def test_text_single_choice() -> None:
    spec = parse_label_config(TEXT)
    assert (spec.from_name, spec.to_name, spec.data_key) == ("sentiment", "text", "review")
    assert spec.modality == "text" and spec.labels == ("pos", "neg") and not spec.multi_label


def test_image_multiple_choice() -> None:
    spec = parse_label_config(IMAGE_MULTI)
    assert spec.modality == "image" and spec.multi_label and spec.labels == ("cat", "dog", "car")
    assert spec.data_key == "image"


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('<View><Text name="t" value="$t"/><Labels name="ner" toName="t"><Label value="PER"/></Labels></View>',
         '<Labels name="ner">'),
        ('<View><Audio name="a" value="$a"/><Choices name="c" toName="a"><Choice value="x"/>'
         '<Choice value="y"/></Choices></View>', "<Audio"),
        ('<View><Text name="t" value="$t"/></View>', "at least one supported control"),
        ("<View><Text", "not valid XML"),
        ("", "empty"),
    ],
)
def test_unsupported_configs_name_the_tag(config: str, needle: str) -> None:
    with pytest.raises(UnsupportedConfig) as info:
        parse_label_config(config)
    assert needle in str(info.value)


def test_two_controls_on_one_object_get_a_task_type_each() -> None:
    config = ('<View><Image name="img" value="$image"/><Choices name="scene" toName="img"><Choice value="in"/>'
              '<Choice value="out"/></Choices><RectangleLabels name="box" toName="img"><Label value="cat"/>'
              '</RectangleLabels></View>')
    spec = parse_label_config(config)
    assert isinstance(spec, MultiControlTask) and family_of(spec).name == "multi" and spec.data_key == "image"
    assert [(c.tag, c.from_name) for c in spec.controls] == [("Choices", "scene"), ("RectangleLabels", "box")]


def test_controls_on_different_objects_are_refused_naming_both() -> None:
    config = ('<View><Text name="t" value="$t"/><Text name="u" value="$u"/><Choices name="a" toName="t">'
              '<Choice value="x"/><Choice value="y"/></Choices><Choices name="b" toName="u"><Choice value="x"/>'
              '<Choice value="y"/></Choices></View>')
    with pytest.raises(UnsupportedConfig, match='name="a".*name="b"'):
        parse_label_config(config)
