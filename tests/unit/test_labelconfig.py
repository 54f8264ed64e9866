"""Label config parsing: what labelloop serves, and the errors that name the offending tag."""

import pytest

from backend.labelstudio.families import family_of
from backend.labelstudio.labelconfig import UnsupportedConfig, ignored_controls, parse_label_config, read_label_config
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
        ('<View><Image name="i" value="$i"/><PolygonLabels name="poly" toName="i"><Label value="PER"/>'
         '</PolygonLabels></View>', '<PolygonLabels name="poly">'),
        ('<View><Image name="i" value="$i"/><Labels name="ner" toName="i"><Label value="PER"/></Labels></View>',
         '<Labels name="ner">: unsupported object tag <Image name="i">'),
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


def test_controls_on_another_object_are_ignored_naming_why() -> None:
    config = ('<View><Text name="t" value="$t"/><Text name="u" value="$u"/><Choices name="a" toName="t">'
              '<Choice value="x"/><Choice value="y"/></Choices><Choices name="b" toName="u"><Choice value="x"/>'
              '<Choice value="y"/></Choices></View>')
    parsed = read_label_config(config)
    assert parsed.spec.from_name == "a"
    assert len(parsed.ignored) == 1 and parsed.ignored[0].startswith('<Choices name="b">: labels \'u\'')


# Label Studio's own templates put a comment box, a rating or a number next to the control a team wants predicted.
EXTRAS = ('<TextArea name="comment" toName="t" rows="3"/><Rating name="stars" toName="t" maxRating="5"/>'
          '<Number name="n" toName="t"/><DateTime name="when" toName="t" only="date"/>')


def test_controls_labelloop_cannot_predict_are_ignored_and_listed() -> None:
    config = ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="x"/><Choice value="y"/>'
              f'</Choices>{EXTRAS}<Choices name="one" toName="t"><Choice value="only"/></Choices></View>')
    parsed = read_label_config(config)
    assert parsed.spec.from_name == "c" and parsed.spec.labels == ("x", "y")
    assert [line.split(":")[0] for line in parsed.ignored] == [
        '<TextArea name="comment">', '<Rating name="stars">', '<Number name="n">', '<DateTime name="when">',
        '<Choices name="one">']
    assert "needs at least 2 <Choice> values" in parsed.ignored[-1]
    assert ignored_controls(config) == parsed.ignored


def test_a_config_with_nothing_to_serve_names_every_ignored_control() -> None:
    with pytest.raises(UnsupportedConfig, match='<TextArea name="comment">.*<Rating name="stars">'):
        parse_label_config(f'<View><Text name="t" value="$t"/>{EXTRAS}</View>')
