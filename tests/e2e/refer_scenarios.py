"""sipp UAS scenarios for REFER edge cases: sipp answers our call, then takes our REFER with
a given status and sends the given NOTIFYs (sipfrag bodies), then waits for our BYE."""

from __future__ import annotations

from ..judges.sipp import replacing_invite_head

_OK = """  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""
"""Answer the request just received 200 OK."""

_ANSWER = """  <recv request="INVITE">
    <action>
      <ereg regexp="tag=([^;> \\r\\n]+)" search_in="hdr" header="From:" assign_to="ftag,our_tag"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:bob@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv

]]></send>
  <recv request="ACK"/>
"""
"""Answer the INVITE (SDP: PCMU and telephone-event) and take the ACK; ``$our_tag`` is
the caller's tag (for the requests sipp sends in the dialog)."""

_HEAD = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, take a REFER, notify">
"""
    + _ANSWER
    + """  <recv request="REFER">
    <action>
      <ereg regexp="tag=([^;> \r\n]+)" search_in="hdr" header="From:" assign_to="ftag,our_tag"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 {refer_status} {refer_reason}
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""
)

_NOTIFY = """  <send><![CDATA[
NOTIFY sip:dtmfgraph@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:bob@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: <sip:dtmfgraph@[remote_ip]:[remote_port]>;tag=[$our_tag]
Call-ID: [call_id]
CSeq: {cseq} NOTIFY
Contact: <sip:bob@[local_ip]:[local_port]>
Max-Forwards: 70
Event: refer
Subscription-State: {state}
Content-Type: message/sipfrag;version=2.0
Content-Length: [len]

SIP/2.0 {frag}
]]></send>
  <recv response="200"/>
"""

_TAIL = """  <recv request="BYE" timeout="{bye_timeout_ms}"/>
  <Reference variables="ftag,our_tag"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


def refer_scenario(
    refer_status: int = 202,
    refer_reason: str = "Accepted",
    notifies: tuple[tuple[str, str], ...] = (),
    bye_timeout_ms: int = 20000,
) -> str:
    """``notifies``: (sipfrag status line without ``SIP/2.0``, Subscription-State) each."""
    out = _HEAD.format(refer_status=refer_status, refer_reason=refer_reason)
    for cseq, (frag, state) in enumerate(notifies, 1):
        out += _NOTIFY.format(cseq=cseq, frag=frag, state=state)
    return out + _TAIL.format(bye_timeout_ms=bye_timeout_ms)


_IVR = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, then transfer the caller with REFER and follow its NOTIFYs">
"""
    + _ANSWER
    + """  <pause milliseconds="300"/>
  <send><![CDATA[
REFER sip:caller@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:ivr@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: <sip:caller@[remote_ip]:[remote_port]>;tag=[$our_tag]
Call-ID: [call_id]
CSeq: 1 REFER
Contact: <sip:ivr@[local_ip]:[local_port]>
Max-Forwards: 70
Refer-To: <{target}>
Referred-By: <sip:ivr@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <recv response="{refer_status}"/>
{notifies}  <recv request="BYE" timeout="20000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <Reference variables="ftag"/>
</scenario>
"""
)

_TAKE_NOTIFY = (
    """  <recv request="NOTIFY"/>
"""
    + _OK
)


def ivr_refer_scenario(target: str, *, accepted: bool = True) -> str:
    """sipp as an IVR we called: it sends REFER to ``target``; when we accept (202) it takes
    our two NOTIFYs (100 Trying, the final status), and then our BYE; refused (603), it waits
    for our BYE."""
    notifies = _TAKE_NOTIFY * 2 if accepted else ""
    return _IVR.format(target=target, refer_status=202 if accepted else 603, notifies=notifies)


def consultative_refer_scenario(target: str) -> str:
    """sipp as the transferee of a consultative transfer: as :func:`refer_scenario` with 202,
    NOTIFYs 100 then 200, but the REFER's Refer-To must be ``<target?Replaces=...>`` with a
    to-tag and a from-tag (sipp fails otherwise); it logs the Refer-To (``-trace_logs``)."""
    check = (
        '      <ereg regexp="^ *&lt;(.*)&gt;" search_in="hdr" header="Refer-To:"'
        ' check_it="true" assign_to="all,referto"/>\n'
        '      <ereg regexp="[?]Replaces=[^&gt;]+%3Bto-tag%3D[^&gt;%]+%3Bfrom-tag%3D[^&gt;%]+&gt;"'
        ' search_in="hdr" header="Refer-To:" check_it="true" assign_to="replaces"/>\n'
        f'      <ereg regexp="&lt;{target.replace(".", "[.]")}[?]" search_in="hdr"'
        ' header="Refer-To:" check_it="true" assign_to="to_target"/>\n'
        '      <log message="REFER-TO [$referto]"/>\n'
    )
    out = refer_scenario(
        202, "Accepted", (("100 Trying", "active;expires=60"), ("200 OK", "terminated"))
    )
    marker = 'assign_to="ftag,our_tag"/>\n    </action>\n  </recv>\n  <send><![CDATA[\nSIP/2.0 202'
    assert marker in out
    head, tail = out.split(marker)
    tail = tail.replace(
        "</scenario>", '  <Reference variables="all,replaces,to_target"/>\n</scenario>'
    )
    return head + 'assign_to="ftag,our_tag"/>\n' + check + marker.split("/>\n", 1)[1] + tail


_REPLACED = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, then hang up when told (an INFO), as a replaced call's far end does">
"""
    + _ANSWER
    + """  <nop><action><log message="CALL-ID [call_id]"/></action></nop>
  <recv request="INFO"/>
"""
    + _OK
    + """  <send><![CDATA[
BYE sip:dtmfgraph@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:agent@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: <sip:dtmfgraph@[remote_ip]:[remote_port]>;tag=[$our_tag]
Call-ID: [call_id]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <Reference variables="ftag"/>
</scenario>
"""
)


def replaced_scenario() -> str:
    """sipp as call B's far end (the agent) in a consultative transfer: it answers, logs its
    Call-ID (``-trace_logs``), and hangs up (BYE) once it gets an INFO, as the target does with
    the call an INVITE with Replaces took over."""
    return _REPLACED


_HOLDING = (
    """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer, log the dialog, wait for our BYE (the call an attended transfer replaces)">
"""
    + _ANSWER
    + """  <nop><action><log message="DIALOG [call_id] [$our_tag] [pid]SIPpTag01[call_number]"/>
  </action></nop>
"""
    + _TAIL.format(bye_timeout_ms=20000)
)


def holding_scenario() -> str:
    """sipp as the far end of a call that another party then replaces (RFC 3891): it
    answers, logs ``DIALOG <Call-ID> <our tag> <its tag>`` (``-trace_logs``), and waits for our
    BYE."""
    return _HOLDING


def replacing_caller_scenario(replaces: str, *, expect: int = 200) -> str:
    """sipp (UAC) calling us with ``Replaces: <replaces>``. ``expect`` 200: it ACKs, waits for
    an INFO (a key the bot sends on the new leg), answers it, then hangs up; otherwise it wants
    that final status (e.g. 481) and ACKs it."""
    head = replacing_invite_head(replaces, expect)
    if expect != 200:
        return head + "</scenario>\n"
    return head + _REPLACER_TAIL


_REPLACER_TAIL = (
    """  <recv request="INFO"/>
"""
    + _OK
    + """  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""
)
