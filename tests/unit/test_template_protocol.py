"""The sidecar template's wire protocol: frames, fork requests, answers, the owner tag room."""

from __future__ import annotations

import attrs
import pytest

from meshkit.api.template import (
    EVALUATOR,
    HEADER,
    MAX_FRAME,
    OWNER_ROOM,
    ForkRequest,
    FrameReader,
    TemplateProtocolError,
    encode,
    fork_answer,
    owner_overwrite,
    padded_owner,
)

REQUEST = ForkRequest(
    args=("--instance", "catalog-v1-0", "--control", "/tmp/x/control.sock"),
    env={"PATH": "/usr/bin", "MESHKIT_OWNER": "abc.7."},
    cwd="/tmp/x",
    fds=(1, 9),
    output=True,
    owner=("MESHKIT_OWNER", "abc.7."),
)


def test_a_request_survives_the_wire_byte_by_byte() -> None:
    reader = FrameReader()
    frame = encode(REQUEST.to_json()) + encode({"pid": 4242})
    messages = []
    for index in range(len(frame)):
        messages += reader.feed(frame[index : index + 1])
    assert [ForkRequest.from_json(messages[0]), fork_answer(messages[1])] == [REQUEST, 4242]
    assert reader.pending == 0


def test_a_partial_frame_waits_and_two_frames_in_one_read_both_come_out() -> None:
    reader = FrameReader()
    frame = encode({"error": "no"})
    assert reader.feed(frame[:-1]) == []
    assert reader.pending == len(frame) - 1
    assert reader.feed(frame[-1:] + frame) == [{"error": "no"}, {"error": "no"}]


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (HEADER.pack(MAX_FRAME + 1), "at most"),
        (HEADER.pack(3) + b"{x}", "not JSON"),
        (HEADER.pack(2) + b"[]", "not a JSON object"),
    ],
)
def test_broken_frames_are_refused(frame: bytes, problem: str) -> None:
    with pytest.raises(TemplateProtocolError, match=problem):
        FrameReader().feed(frame)


def test_a_frame_too_big_is_not_sent() -> None:
    with pytest.raises(TemplateProtocolError, match="at most"):
        encode({"env": {"X": "y" * MAX_FRAME}})


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("args", "--instance x", "args"),
        ("args", [1], "args"),
        ("env", {"A": 1}, "env"),
        ("env", ["A"], "env"),
        ("cwd", 3, "cwd"),
        ("fds", [-1], "fds"),
        ("fds", [True], "fds"),
        ("output", "yes", "output"),
        ("owner", ["MESHKIT_OWNER"], "owner"),
        ("program", "meshkit.proxy", "program"),
        ("program", None, "program"),
    ],
)
def test_a_malformed_request_names_its_field(field: str, value: object, problem: str) -> None:
    raw = {**REQUEST.to_json(), field: value}
    with pytest.raises(TemplateProtocolError, match=problem):
        ForkRequest.from_json(raw)


def test_an_evaluator_request_survives_the_wire() -> None:
    request = attrs.evolve(REQUEST, args=("/tmp/x/Meshfile.py",), fds=(0, 1, 2), program=EVALUATOR)
    [raw] = FrameReader().feed(encode(request.to_json()))
    assert ForkRequest.from_json(raw) == request


def test_a_request_missing_a_field_is_refused() -> None:
    raw = REQUEST.to_json()
    del raw["env"]
    with pytest.raises(TemplateProtocolError, match="env"):
        ForkRequest.from_json(raw)


@pytest.mark.parametrize("raw", [{}, {"pid": True}, {"pid": 1}, {"pid": "12"}, {"error": 3}])
def test_an_answer_is_a_pid_or_an_error(raw: dict[str, object]) -> None:
    with pytest.raises(TemplateProtocolError):
        fork_answer(raw)
    assert fork_answer({"error": "fork failed"}) == "fork failed"


def test_a_sidecar_tag_fits_over_the_templates_padded_one() -> None:
    template_tag = "0123456789abcdef.1."
    current = padded_owner(template_tag).encode()
    sidecar_tag = "0123456789abcdef.123456."
    written = owner_overwrite(current, sidecar_tag)
    assert len(written) == len(current) == len(template_tag) + OWNER_ROOM
    assert written.split(b"\0")[0].decode() == sidecar_tag
    assert set(written[len(sidecar_tag) :]) == {0}


@pytest.mark.parametrize("tag", ["", "x" * 100, "a\0b"])
def test_a_tag_that_does_not_fit_is_refused(tag: str) -> None:
    with pytest.raises(TemplateProtocolError):
        owner_overwrite(padded_owner("run.1.").encode(), tag)
