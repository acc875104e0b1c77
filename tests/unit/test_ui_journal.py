"""The UI's journal pages: commands paired with the notification that completes them, calls
with their callee's id, payload previews (UTF-8 or base64, cut at the preview limit), paging."""

from __future__ import annotations

import base64

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.server.admin.journal import PREVIEW_CHARS_MAX, journal_page
from perdure.server.processor.model import Entry

CALLEE = "inv_1fpRnrRMvEVm1yGMI51m0Ur6WF8hQl3CNR"


def _journal() -> list[Entry]:
    msgs = [
        (T.INPUT, pb.InputCommandMessage(value=pb.Value(content=b'"Ann"'))),
        (T.RUN, pb.RunCommandMessage(name="build", result_completion_id=1)),
        (
            T.CALL,
            pb.CallCommandMessage(
                service_name="Greeter",
                handler_name="greet",
                parameter=b'"x"',
                invocation_id_notification_idx=2,
                result_completion_id=3,
            ),
        ),
        (T.CALL_INVOCATION_ID_COMPLETION, pb.NotificationMessage(completion_id=2, invocation_id=CALLEE)),
        (T.RUN_COMPLETION, pb.NotificationMessage(completion_id=1, value=pb.Value(content=b'"built"'))),
        (T.SET_STATE, pb.SetStateCommandMessage(key=b"blob", value=pb.Value(content=b"\xff\x00" * 2000))),
        (
            T.CALL_COMPLETION,
            pb.NotificationMessage(completion_id=3, failure=pb.Failure(code=409, message="no")),
        ),
        (T.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"x" * (PREVIEW_CHARS_MAX + 10)))),
    ]
    return [Entry(int(t), m.SerializeToString(), 1000 + i) for i, (t, m) in enumerate(msgs)]


def test_commands_are_paired_with_their_completions_and_calls_with_their_callee() -> None:
    page = journal_page(_journal(), 0, 100)
    assert page["total"] == 8
    e = page["entries"]
    assert [x["ty"] for x in e[:3]] == ["Command: Input", "Command: Run", "Command: Call"]
    assert e[0]["v"] == '"Ann"'
    assert (e[1]["n"], e[1]["cid"], e[1]["done"], e[1]["done_at"]) == ("build", 1, 4, 1004)
    assert e[4]["v"] == '"built"' and e[4]["nid"] == 1
    assert (e[2]["target"], e[2]["callee"], e[2]["done"], e[2]["v"]) == ("Greeter/greet", CALLEE, 6, '"x"')
    assert e[6]["f"] == {"code": 409, "message": "no"}


def test_payload_previews_are_utf8_or_base64_and_cut_at_the_limit() -> None:
    e = journal_page(_journal(), 0, 100)["entries"]
    blob = e[5]
    assert blob["key"] == "blob" and blob["b64"] is True and blob["trunc"] is True
    assert base64.b64decode(blob["v"]) == (b"\xff\x00" * 2000)[: PREVIEW_CHARS_MAX * 3 // 4]
    assert e[7]["v"] == "x" * PREVIEW_CHARS_MAX and e[7]["trunc"] is True


def test_a_page_keeps_links_to_entries_outside_it() -> None:
    page = journal_page(_journal(), 1, 2)
    assert [x["i"] for x in page["entries"]] == [1, 2]
    assert page["entries"][0]["done"] == 4 and page["entries"][1]["callee"] == CALLEE
    assert journal_page(_journal(), 8, 10)["entries"] == []
