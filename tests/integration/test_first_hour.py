"""What a new user sees in Label Studio itself: a wrong key and an unusable config are explained in its
connection dialog (not only in labelloop's log), and a config with extra controls connects."""

from __future__ import annotations

import uuid

import pytest
from label_studio_sdk.core.api_error import ApiError

from tests.integration.test_loop import CONFIG

pytestmark = pytest.mark.integration


def connect(ls, server, config: str):
    project = ls.projects.create(title=f"first-hour-{uuid.uuid4().hex[:6]}", label_config=config)
    return project, lambda: ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)


def refusal(create) -> str:
    """The message Label Studio's "Validate and Save" shows (its API answers 400 with it)."""
    with pytest.raises(ApiError) as info:
        create()
    assert info.value.status_code == 400
    return str(info.value.body)


def test_a_wrong_api_key_is_explained_in_label_studios_connection_dialog(label_studio, backend_server_factory) -> None:
    server = backend_server_factory({"LABEL_STUDIO_API_KEY": "0" * 40})
    ls = label_studio.client()
    _, create = connect(ls, server, CONFIG)
    message = refusal(create)
    assert "refused labelloop's API key (401 from LABEL_STUDIO_API_KEY)" in message, message
    assert "Account & Settings" in message


def test_an_unservable_config_names_the_controls_in_the_dialog(label_studio, backend_server_factory) -> None:
    server = backend_server_factory()
    ls = label_studio.client()
    _, create = connect(ls, server, '<View><Text name="text" value="$text"/><TextArea name="comment" '
                                    'toName="text"/></View>')
    message = refusal(create)
    assert "expected at least one supported control" in message and '<TextArea name="comment">' in message, message


def test_a_template_config_with_a_comment_box_and_a_rating_connects(label_studio, backend_server_factory) -> None:
    server = backend_server_factory()
    ls = label_studio.client()
    config = CONFIG.replace("</View>", '<TextArea name="comment" toName="text" rows="2"/>'
                                       '<Rating name="stars" toName="text" maxRating="5"/></View>')
    _, create = connect(ls, server, config)
    ml = create()
    assert ls.ml.get(id=ml.id).state == "CO"
