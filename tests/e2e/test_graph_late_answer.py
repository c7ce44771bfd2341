"""POST /communications/calls answers before the far end does (as Graph's: ``establishing``, the
answer comes later as a notification), and a sendDtmfTones on the establishing call is answered
once it is stored, then plays when the far end answers.

Real parts: the service on uvicorn with ``--media sip`` and a SQLite file, the official
``msgraph-sdk`` as the client, a webhook receiver, and sipp as the far end, which rings and
answers only after a long pause (it logs ``answering`` just before its 200 OK).
"""

from __future__ import annotations

from pathlib import Path

from dtmfgraph.store import SqlRepository

from ..api.harness import Receiver, stop
from ..api.sdkhelp import dtmf_body, new_call
from ..judges.baresip import free_port as free_udp_port
from ..judges.sipp import sipp_logged, sipp_uas, uas_late_answer_scenario
from .test_graph_sip import call_url, code, ev, is_call_state, is_op_end, start_sip_service

ANSWER_AFTER_MS = 4000
"""How long sipp rings before it answers: far longer than a POST takes on any box (a POST that
waited for the answer could not come back before sipp logged ``answering``)."""


def _answered(workdir: Path) -> bool:
    """Whether sipp has logged that it is answering."""
    return any(
        line.startswith("answering")
        for log in workdir.glob("*_logs.log")
        for line in log.read_text(errors="replace").splitlines()
    )


async def test_post_call_and_send_answer_before_the_far_end_does(
    tmp_path: Path, receiver: Receiver
) -> None:
    service, server, task = await start_sip_service(tmp_path / "svc", receiver)
    far = tmp_path / "sipp"
    extra = ("-trace_logs", "-mi", "127.0.0.1", "-mp", str(free_udp_port()))
    try:
        late = uas_late_answer_scenario(ANSWER_AFTER_MS, log="answering")
        async with sipp_uas(far, late, timeout_s=30, extra=extra) as (port, proc):
            client = service.sdk("v1.0")
            call = await client.communications.calls.post(
                new_call("v1.0", receiver.url, f"sip:late@127.0.0.1:{port}")
            )
            assert ev(call.state) == "establishing"
            assert not _answered(far), "the POST came back only after the far end answered"
            calls = client.communications.calls.by_call_id(call.id)

            # a send on the establishing call: stored, answered, not started yet
            op = await calls.send_dtmf_tones.post(dtmf_body("v1.0", "12", client_context="early"))
            assert ev(op.status) == "notStarted" and op.client_context == "early"
            assert not _answered(far)
            store = SqlRepository(service.settings.database_url)
            try:  # in the store before the answer (what a restart or another node reads)
                async with store.unit() as uow:
                    stored_call = await uow.get_call(call.id)
                    stored_op = await uow.get_operation(call.id, op.id)
            finally:
                await store.close()
            assert stored_call is not None and stored_call.state.value == "establishing"
            assert stored_op is not None and stored_op.client_context == "early"
            assert ev((await calls.get()).state) == "establishing"

            # then the far end answers: established, and the keys play
            await receiver.wait_for(is_call_state(call.id, "established"), timeout=20)
            assert await sipp_logged(far, "answering") == ""
            [end] = await receiver.wait_for(is_op_end(op.id), timeout=15)
            data = end["resourceData"]
            assert (data["status"], data["completionReason"]) == (
                "completed",
                "completedSuccessfully",
            )
            assert code(end) == (200, 0)
            states = [
                n["resourceData"]["state"]
                for n in receiver.notes
                if n["resourceUrl"] == call_url(call.id)
            ]
            assert states[:2] == ["establishing", "established"]

            await calls.delete()
            await receiver.wait_for(
                lambda n: n["changeType"] == "deleted" and n["resourceUrl"] == call_url(call.id),
                timeout=10,
            )
            await proc.wait()
            assert proc.returncode == 0, "sipp's scenario did not pass (see its logs)"
    finally:
        await stop(server, task)
