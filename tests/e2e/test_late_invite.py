"""A late copy of a finished call's INVITE gets 481 and never a second call (sipp, real UDP).

sipp calls, is answered, hangs up, and then sends its very INVITE again (same branch, Call-ID,
From tag and CSeq) once the phone's INVITE transaction and call are gone: with T1 = 20 ms they
last 64*T1 = 1.28 s, so the copy stands for one that comes 40 s late with the default timers.
The scenario expects exactly a 481 (a 100 Trying, i.e. a new call, fails it) and ACKs it.
"""

from __future__ import annotations

from pathlib import Path

from dtmfgraph.media.phone import Phone
from dtmfgraph.sip import SipTimers

from ..judges.sipp import run_sipp
from .answering import answer_every_call

_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-late-[call_number]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000

    ]]>
  </send>
"""


def _in_dialog(method: str, cseq: int, branch: str, retrans: bool) -> str:
    attr = ' retrans="500"' if retrans else ""
    return f"""  <send{attr}>
    <![CDATA[
      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def late_invite_scenario(pause_ms: int) -> str:
    """INVITE, 200, ACK, BYE, 200; ``pause_ms`` later the same INVITE again: 481, ACKed."""
    return "".join(
        [
            '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n',
            '<scenario name="late INVITE copy">\n',
            _INVITE,
            '  <recv response="100" optional="true"/>\n',
            '  <recv response="180" optional="true"/>\n',
            '  <recv response="200" rrs="true"/>\n',
            _in_dialog("ACK", 1, "[branch]", retrans=False),
            _in_dialog("BYE", 2, "[branch]", retrans=True),
            '  <recv response="200"/>\n',
            f'  <pause milliseconds="{pause_ms}"/>\n',
            _INVITE,
            '  <recv response="481"/>\n',
            _in_dialog("ACK", 1, "z9hG4bK-late-[call_number]", retrans=False),
            "</scenario>\n",
        ]
    )


async def test_a_late_invite_copy_of_a_finished_call_gets_481(tmp_path: Path) -> None:
    timers = SipTimers(t1=0.02)  # INVITE transaction and call kept 64*T1 = 1.28 s
    phone = await Phone.start("127.0.0.1", 0, timers=timers)
    try:
        calls, _ = answer_every_call(phone)
        result = await run_sipp(late_invite_scenario(2500), phone.sip_address, tmp_path / "sipp")
        assert result.returncode == 0, result.explain()
        assert len(calls) == 1  # the copy started no second call
        assert phone.ua.counters.ended_dialog_invites == 1
    finally:
        await phone.close()
