"""sipp UAS scenarios for REFER edge cases: sipp answers our call, then takes our REFER with
a given status and sends the given NOTIFYs (sipfrag bodies), then waits for our BYE."""

from __future__ import annotations

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

_TAKE_NOTIFY = """  <recv request="NOTIFY"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""


def ivr_refer_scenario(target: str, *, accepted: bool = True) -> str:
    """sipp as an IVR we called: it sends REFER to ``target``; when we accept (202) it takes
    our two NOTIFYs (100 Trying, the final status), and then our BYE; refused (603), it waits
    for our BYE."""
    notifies = _TAKE_NOTIFY * 2 if accepted else ""
    return _IVR.format(target=target, refer_status=202 if accepted else 603, notifies=notifies)
