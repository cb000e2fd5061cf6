"""The attestation as read from a token: codes and texts that reach the access log are bounded and
always encodable."""

from services.platform.principal import ATTESTATION_TYPE, Attestation


def attestation(purpose: object = "TREAT", decision_ref: object = "ref-1") -> Attestation | None:
    return Attestation.from_authorization_details(
        [
            {
                "type": ATTESTATION_TYPE,
                "care_relationship": {"purpose_of_use": {"code": purpose}, "decision_ref": {"id": decision_ref}},
                "patients": [{"identifier": {"id": "22750884907"}}],
            }
        ]
    )


def test_a_known_purpose_and_reference_are_kept():
    found = attestation()
    assert found is not None
    assert (found.purpose_of_use, found.decision_ref, found.patient_ids) == ("TREAT", "ref-1", ("22750884907",))


def test_an_unknown_but_well_formed_purpose_is_kept_for_the_log():
    assert attestation("RESEARCH").purpose_of_use == "RESEARCH"


def test_an_overlong_or_malformed_purpose_becomes_invalid():
    assert attestation("TREATMENT-OF-A-VERY-LONG-KIND").purpose_of_use == "INVALID"
    assert attestation("treat").purpose_of_use == "INVALID"
    assert attestation(7).purpose_of_use is None


def test_texts_with_control_characters_or_lone_surrogates_are_dropped():
    assert attestation(decision_ref="ref\ud800").decision_ref is None
    assert attestation(decision_ref="ref\n2").decision_ref is None
    assert attestation(decision_ref="x" * 500).decision_ref == "x" * 200


def test_no_attestation_of_the_trust_framework_type():
    assert Attestation.from_authorization_details([{"type": "other"}]) is None
