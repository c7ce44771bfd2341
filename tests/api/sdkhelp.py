"""Building request objects with the official SDKs (v1.0 and beta share the same shapes)."""

from __future__ import annotations

import importlib
from typing import Any


def sdk_mod(version: str, path: str) -> Any:
    root = "msgraph" if version == "v1.0" else "msgraph_beta"
    return importlib.import_module(f"{root}.generated.{path}")


def new_call(version: str, callback: str, target: str = "+14255550100") -> Any:
    m = lambda p: sdk_mod(version, p)  # noqa: E731
    ident = m("models.identity").Identity(id=target, display_name="far end")
    ids = m("models.communications_identity_set").CommunicationsIdentitySet(
        **({"phone": ident} if target.startswith("+") else {"user": ident})
    )
    target_info = m("models.invitation_participant_info").InvitationParticipantInfo(identity=ids)
    return m("models.call").Call(
        callback_uri=callback,
        targets=[target_info],
        requested_modalities=[m("models.modality").Modality.Audio],
        media_config=m("models.service_hosted_media_config").ServiceHostedMediaConfig(),
    )


def dtmf_body(version: str, tones: str | list[str], **extra: Any) -> Any:
    m = lambda p: sdk_mod(version, p)  # noqa: E731
    tone_cls = m("models.tone").Tone
    body = m(
        "communications.calls.item.send_dtmf_tones.send_dtmf_tones_post_request_body"
    ).SendDtmfTonesPostRequestBody()
    names = tones if isinstance(tones, list) else [KEY_TONE[k] for k in tones]
    body.tones = [tone_cls(n) for n in names]
    for key in ("client_context", "delay_between_tones_ms"):
        if key in extra:
            setattr(body, key, extra.pop(key))
    body.additional_data = extra
    return body


def answer_body(version: str, callback_uri: str) -> Any:
    """An ``answer`` body accepting audio, service-hosted media (Graph requires mediaConfig),
    callbacks to ``callback_uri``."""
    body = sdk_mod(version, "communications.calls.item.answer.answer_post_request_body")
    modality = sdk_mod(version, "models.modality").Modality
    media = sdk_mod(version, "models.service_hosted_media_config").ServiceHostedMediaConfig()
    return body.AnswerPostRequestBody(
        callback_uri=callback_uri, accepted_modalities=[modality.Audio], media_config=media
    )


def context_body(version: str, action: str, client_context: str | None = None) -> Any:
    mod = {
        "cancel": "cancel_media_processing.cancel_media_processing_post_request_body",
        "subscribe": "subscribe_to_tone.subscribe_to_tone_post_request_body",
    }[action]
    cls_name = {
        "cancel": "CancelMediaProcessingPostRequestBody",
        "subscribe": "SubscribeToTonePostRequestBody",
    }[action]
    body = getattr(sdk_mod(version, f"communications.calls.item.{mod}"), cls_name)()
    body.client_context = client_context
    return body


KEY_TONE = {str(i): f"tone{i}" for i in range(10)} | {
    "*": "star",
    "#": "pound",
    "A": "a",
    "B": "b",
    "C": "c",
    "D": "d",
}
ALL_KEYS = "1234567890*#ABCD"
