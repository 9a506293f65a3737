"""The Beacon 2.0 format, signing, chain verification, the publisher and the beacon key.

The known answers are NIST's: two consecutive pulses of its Randomness Beacon 2.0,
chain 2 (https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1921299 and 1921300, as
NIST published them), and the certificate their certificateId names (SHA-512 of
its DER). Our serialization reproduces NIST's signed bytes: the signatures verify
under NIST's key and the output values come out equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.beacon.publisher import (
    AppendPulse,
    BeaconKey,
    Publisher,
    load_beacon_key,
    next_record,
    open_next,
    seal_next,
    self_signed_certificate,
    stored_pulse,
)
from quantumrng.beacon.pulse import (
    STATUS_NEW_CHAIN,
    STATUS_OK,
    ListValue,
    Pulse,
    _period_start,
    certificate_id,
    expected_list_index,
    format_time,
    output_value,
    parse_time,
    serialize,
    sign,
    verify_chain,
    verify_pulse,
)
from quantumrng.errors import ConfigError
from quantumrng.pool.memory import MemoryPool
from quantumrng.transparency.store import Counters, Entry, MemoryLedger, PulseExists
from tests.conftest import make_settings

NIST_CERTIFICATE = b"""\
-----BEGIN CERTIFICATE-----
MIIIDDCCBvSgAwIBAgIQDtPWG6WQtrhvGOQrU+TzAzANBgkqhkiG9w0BAQsFADBZ
MQswCQYDVQQGEwJVUzEVMBMGA1UEChMMRGlnaUNlcnQgSW5jMTMwMQYDVQQDEypE
aWdpQ2VydCBHbG9iYWwgRzIgVExTIFJTQSBTSEEyNTYgMjAyMCBDQTEwHhcNMjUw
ODI4MDAwMDAwWhcNMjYwOTA0MjM1OTU5WjCBkTELMAkGA1UEBhMCVVMxETAPBgNV
BAgTCE1hcnlsYW5kMRUwEwYDVQQHEwxHYWl0aGVyc2J1cmcxNzA1BgNVBAoTLk5h
dGlvbmFsIEluc3RpdHV0ZSBvZiBTdGFuZGFyZHMgYW5kIFRlY2hub2xvZ3kxHzAd
BgNVBAMTFmVuZ2luZS5iZWFjb24ubmlzdC5nb3YwggIiMA0GCSqGSIb3DQEBAQUA
A4ICDwAwggIKAoICAQDK8LBXc1vqLy0L/HgqGzRpINHK9ekZL03Le2OQb1virh09
rKTgzl612xpEPZvob3VQM8MYyY7Y07+PSu76uR/qjAiE+0bz5qjrgtqzXA1JIN0c
CP7e0jC/cQp+UuOTSGrhFMSVRWehPNzhYAIJPwra6sCD73UC74qx8kP+idR6BwkQ
YSgoPTzgkpiFBvXkAo4TIociiExaEOYP208ZgcXHphB2gb/TKKlA3r9aTYUIZcpT
23MTEmV6913T8ODC+CyRNSZ0OvIO0uXzNpOHGzsd/AnT5C6T+9aMWx+4IjeRgl3z
wuP9cnNMbJUJQ2qfGiQA2/4Cr19oHN+XiBQIgsX2RmPuVRUAGpQrqzTF5z+OvGut
gaA6ZL0SUyN9KnRO0KkVqb1lWaclCEEiIJTXjC9tCo1xF0wGZyeHrbWI4TqKKgnK
C//NejclCak+li1HW02Vttjav4PhlcnSI0f/uW6ljjOG0TQdJiqWLN+jTZEZQ2Cm
MLRJQLfj/brti4J+IFZEjDF3CwK8daf+n36he7J1PAwRCWNsKExIyGzQTyWGfJ9V
Tz9ljtY5+zz+hA5PTUaPVOzUzHyl97227kPf4KaJQYMwa2Uf67zmzCv3NZtVACo2
pVJvYwFZhjG8RThgY60KJZHcJnuhwG0CHBrHpArryLrdeMWEePd+7+aCWu88KQID
AQABo4IDlTCCA5EwHwYDVR0jBBgwFoAUdIWAwGbH3zfez70pN6oDHb7tzRcwHQYD
VR0OBBYEFFU/rZbp31gShqzyw4IbOPv3NTUTMCEGA1UdEQQaMBiCFmVuZ2luZS5i
ZWFjb24ubmlzdC5nb3YwPgYDVR0gBDcwNTAzBgZngQwBAgIwKTAnBggrBgEFBQcC
ARYbaHR0cDovL3d3dy5kaWdpY2VydC5jb20vQ1BTMA4GA1UdDwEB/wQEAwIFoDAd
BgNVHSUEFjAUBggrBgEFBQcDAQYIKwYBBQUHAwIwgZ8GA1UdHwSBlzCBlDBIoEag
RIZCaHR0cDovL2NybDMuZGlnaWNlcnQuY29tL0RpZ2lDZXJ0R2xvYmFsRzJUTFNS
U0FTSEEyNTYyMDIwQ0ExLTEuY3JsMEigRqBEhkJodHRwOi8vY3JsNC5kaWdpY2Vy
dC5jb20vRGlnaUNlcnRHbG9iYWxHMlRMU1JTQVNIQTI1NjIwMjBDQTEtMS5jcmww
gYcGCCsGAQUFBwEBBHsweTAkBggrBgEFBQcwAYYYaHR0cDovL29jc3AuZGlnaWNl
cnQuY29tMFEGCCsGAQUFBzAChkVodHRwOi8vY2FjZXJ0cy5kaWdpY2VydC5jb20v
RGlnaUNlcnRHbG9iYWxHMlRMU1JTQVNIQTI1NjIwMjBDQTEtMS5jcnQwDAYDVR0T
AQH/BAIwADCCAYEGCisGAQQB1nkCBAIEggFxBIIBbQFrAHcA2AlVO5RPev/IFhlv
lE+Fq7D4/F6HVSYPFdEucrtFSxQAAAGY8XDehAAABAMASDBGAiEArI73ONpayuGx
p9aYiwquf2juRl4/0ywyNvaaHEsG7TsCIQCzOIX1y4qskUjSmiN2TATncR8BiscH
qWtgSSC0ovVOygB3AMIxfldFGaNF7n843rKQQevHwiFaIr9/1bWtdprZDlLNAAAB
mPFw3okAAAQDAEgwRgIhAOo4MzhX2v1YItn9ZAfp1nPneHwk4AIcqjYmVNZZgHtJ
AiEArVpyqLyZVv+xg+TRltVeCMxyXIs/iOXrupQT+r9K/dMAdwCUTkOH+uzB74Hz
GSQmqBhlAcfTXzgCAT9yZ31VNy4Z2AAAAZjxcN6YAAAEAwBIMEYCIQCQpS7hCyUE
cQradZjNmMBYkrpUUUnuGi8orxfJJyiHwAIhAIfBIcnxZ+aiEaJKsvsQNOE4CsdA
NJZT1MCdHe4ytTnVMA0GCSqGSIb3DQEBCwUAA4IBAQCMCc9s/p1hrzmaQaROb+NZ
7V+zC/gbzKjlCghA8whu/jMaPF2DTRBFADE0Xqo8MEYMMFfeK1J/idyJF3Qctsnr
CqYR46v2RWgqlGKB8rxpRot9RJiY7DTV6SMAUIh57rDOo0wlPgRMWDZaUoGxIU9l
ZaNH8fCtfCHX8QTDABWZGKn7oAF0vdECPERB4rLRZj/ntEQ2ZVuWI7d0G7C07neB
egN2zxtMqRb2/0xq/JGVQ8l7pF7X/2LpjCwzsCBBhX898vqrY6rmlZkrUzYzfz4x
ZnymNn1aFlU45iP/GunIT86pqzS/sXmuh7EaXpCTzAhTs18PrD/46FJiP7NIBS2M
-----END CERTIFICATE-----
"""

NIST_PULSE_1921299 = (
    '{"pulse":{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1921299","version":"'
    '2.0","cipherSuite":0,"period":60000,"certificateId":"528943a555f5f8ca54423be6dfb95925a'
    "35c7b552046420e7d7cd072058a14d6536ad3a8e9754b6582f164a90b0cd86a65d659f5426a2659a947595"
    'd1c816c8c","chainIndex":2,"pulseIndex":1921299,"timeStamp":"2026-08-31T19:03:00.000Z",'
    '"localRandomValue":"F9B8C744B42D3860A648E7D35AAA5B9D5F5FC9E69925BB66F75FA55F4990136135'
    'A29CB3EC01B8A0FEF3D51F2E892EDB67F2019836E759898C0F6DE4A7CED46B","external":{"sourceId"'
    ':"000000000000000000000000000000000000000000000000000000000000000000000000000000000000'
    '00000000000000000000000000000000000000000000","statusCode":0,"value":"0000000000000000'
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    '00000000000000000000000000"},"listValues":[{"uri":"https://beacon.nist.gov/beacon/2.0/'
    'chain/2/pulse/1921298","type":"previous","value":"816039E2CE2D4AAA2F4383CF22088E43BC68'
    "F6625E2E3E3956C7F6D8E90487F9C0AF00ACD092B33A016CAF8EB63CE68729CA03815FD5EC32F2EB66F65D"
    '49E98F"},{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1921296","type":"hou'
    'r","value":"B8CB2D8003F26C1ACFDAD17B4F8FEA3B037D51273C7E0F619D31C60DD5E469DD0A344F6C10'
    'FCCA8E38F87CE94911B2D5FDEEA3F63FABF04A93DFFCCAEB0FDEF0"},{"uri":"https://beacon.nist.g'
    'ov/beacon/2.0/chain/2/pulse/1920968","type":"day","value":"BEAA0122A962EE6C2C58996E9B5'
    "A26162ACC782B867239ACD6F64C49B9046C23D724EA0FDFA57E5A7FA500F5E7886D4A4CCC6BFF594F709E4"
    'A83E474D35655DA"},{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1884280","t'
    'ype":"month","value":"E9B85FC90413B5508783DC458B70149310F6E65A5181960750F5F7CD1ABA711C'
    '13628B306023949945256F3BBC298176B0B56A77820A71662D1934EE983325B0"},{"uri":"https://bea'
    'con.nist.gov/beacon/2.0/chain/2/pulse/1595005","type":"year","value":"A5FD82C3D2D3BD40'
    "D828416E16786CB12040BE747E0558CB834430D356760749B4DE671A660D6A4F16BBEBF1219A4376C14030"
    'F3D6A15CF26884B3244675159C"}],"precommitmentValue":"F5267A519D96EB4F1D6EA68ECAE6BF70EB'
    "C692D4738C3DF94F9B4F3ACAAE55DCBF35A04EACC01366493E70EE9D4BF87D84D62B6DFEDC68F1BDD8FDEE"
    'B6FC3C20","statusCode":0,"signatureValue":"2157EC5DE953A1BD2EED2496286FD24153506F71C85'
    "4C529241DAC6897F1B493E95958D9B8AC5CD20873D937A588E14BFAD9652B61182A4EFD2365AC9641E0F23"
    "DFCBF951C6669BDC041251FBE73C65DCDA34E1DF26C0778E5DC8B4EC5137B29EECDF009CCD400EAF12B54A"
    "CA7470D4F7E9DF127254013F0C054627CD86DE7B15F292E4FAF08F8CA0DE84169E026FD9EE1D3868D05AD8"
    "F356ED270BE72FEF1788D1DCC53DF75F4BA3527DA02A3AB821FB2972782FD59644EBAC5AC5523459F96570"
    "D81C87D9C42CE875F88C549552C09B41DE3904BD4C0AA3580111E1A86DFAB3C4887A9446750B7DD2B6B97F"
    "D3C2F37392B7A22A9A4F2FAED3683817A9606C0CE3E6E3460AF2833ED03A104AB7CE6D7A87472F70A7B9B9"
    "322773DF3D12A0A3E88C6918024BADBABD988384DDBF941E63A69B7B7553FC3A1E7BA8D2372E3698D86412"
    "0D6C763758E95E79691AE862189003F7A99C9A5A469F6523AFF4AF56773415E676FC8700E39C10AFAA02A4"
    "D62D74996C2CD0074251907F3A0BFF10D30AAA98F625A145ECED0BCF4412DD95E12C858B3BFF9F6ED53066"
    "0253974A8E7D33EEF36BF4C7EC4EDD06F934029F95F88CD81DBB8EA8025BFE8BFEFFF03F0F129FBBABE083"
    "BB6D6B8E3FEC82C2E1CD314670549148A8E0876D6C6A268263AD61F1D19BAFD45F05768C7286025E286827"
    '0B95D8C882928CEF87A779021BA9A8136D3","outputValue":"EBE3439BE1109FFB4BBA124F7384184EDA'
    "BDC52ACBF18F189213029DE5AF6464C5A5118FAEF97E84FC080C23D52E0E52DF5ED6F683D2E6317439AB86"
    '9CF5C362"}}'
)

NIST_PULSE_1921300 = (
    '{"pulse":{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1921300","version":"'
    '2.0","cipherSuite":0,"period":60000,"certificateId":"528943a555f5f8ca54423be6dfb95925a'
    "35c7b552046420e7d7cd072058a14d6536ad3a8e9754b6582f164a90b0cd86a65d659f5426a2659a947595"
    'd1c816c8c","chainIndex":2,"pulseIndex":1921300,"timeStamp":"2026-08-31T19:04:00.000Z",'
    '"localRandomValue":"3D7C711FEAB941BACE8DD2F3B85F318585149283B69911CCEB2D7937B417EF5DE0'
    '761AC12289FC1C4F27072D139FAC2A5B9D9C33C62818FE58B06A86726EF519","external":{"sourceId"'
    ':"000000000000000000000000000000000000000000000000000000000000000000000000000000000000'
    '00000000000000000000000000000000000000000000","statusCode":0,"value":"0000000000000000'
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    '00000000000000000000000000"},"listValues":[{"uri":"https://beacon.nist.gov/beacon/2.0/'
    'chain/2/pulse/1921299","type":"previous","value":"EBE3439BE1109FFB4BBA124F7384184EDABD'
    "C52ACBF18F189213029DE5AF6464C5A5118FAEF97E84FC080C23D52E0E52DF5ED6F683D2E6317439AB869C"
    'F5C362"},{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1921296","type":"hou'
    'r","value":"B8CB2D8003F26C1ACFDAD17B4F8FEA3B037D51273C7E0F619D31C60DD5E469DD0A344F6C10'
    'FCCA8E38F87CE94911B2D5FDEEA3F63FABF04A93DFFCCAEB0FDEF0"},{"uri":"https://beacon.nist.g'
    'ov/beacon/2.0/chain/2/pulse/1920968","type":"day","value":"BEAA0122A962EE6C2C58996E9B5'
    "A26162ACC782B867239ACD6F64C49B9046C23D724EA0FDFA57E5A7FA500F5E7886D4A4CCC6BFF594F709E4"
    'A83E474D35655DA"},{"uri":"https://beacon.nist.gov/beacon/2.0/chain/2/pulse/1884280","t'
    'ype":"month","value":"E9B85FC90413B5508783DC458B70149310F6E65A5181960750F5F7CD1ABA711C'
    '13628B306023949945256F3BBC298176B0B56A77820A71662D1934EE983325B0"},{"uri":"https://bea'
    'con.nist.gov/beacon/2.0/chain/2/pulse/1595005","type":"year","value":"A5FD82C3D2D3BD40'
    "D828416E16786CB12040BE747E0558CB834430D356760749B4DE671A660D6A4F16BBEBF1219A4376C14030"
    'F3D6A15CF26884B3244675159C"}],"precommitmentValue":"C742BC46AB7308823487E4EA0D05B24460'
    "7F7BC92BCCD945B353EDAFF9456D008B3D20A1C92DF393E1AC95DCB8A7A9AE1AE86E0390FBA45A36A1A55A"
    '7DDE99E6","statusCode":0,"signatureValue":"583FA9F2FC511E4559B98C5C7122FC0C52CBA2D5D0C'
    "7B7C3BA95C3EE9FF6764292BB30F12340E056B7AF61AD66409999113401670F3706FCA5F76A2DC5851FD51"
    "7F5BB1FC4DDDE1D657744575B27CB4E135C988E5525C18E4C5DF96F3A442628E3E4F4DE6AF46B3E0072D88"
    "24E61DD861083614D976EFA7FD879F178BDA8DFBDFF0E807BA4B6CDAF9588CCE191BAC03AB3599A8431D93"
    "BDC9C27F3EBA1E30B7CD6174F0580B8ED938245EACFAA9FE40991A579B5D4E790A5274A1563F940A5E1338"
    "F8C27CF15BCD37EB05B8579D0B7CFA0A8A39F4A05E7AE38E0A29EDC41FA5D8FC1D189CDC1A23563603DD64"
    "B9984C40464232B224E6528A385BDAB95E75BCF6A0912D94820A58E08D9624BE7DC2C7629FB27057CBD1D4"
    "5E01E6443E43716AF301DE053EDD1D95773670582A059F6F3B2972F30D82B30339DF7956F5A430C1F8E401"
    "F5D4CA886E97165903731788A33F760BD585D7EAC204A8DEEE48EAC2865337F7FBCAB719E26CB727CF98B8"
    "0752CA3AF5CB5A4E8E31F096C6BF4D843E10811BF6A086AFAB0EBE05141176332055C6A6AD8370AF09AEDC"
    "B6285EBBC35ABF2282890FF7A0A2F2ADAE96701ECCFE37BE0D8BCF942973CFED2C7D3F90E012664D836248"
    "1AC4DBEDDE160234124A67D18965A52AB899595DBD49DF9ED44FB1C172EB1A5DB05234C894CF0DA8EE70F5"
    'CA20DF49002AEA8F2782406AF2EB3A749B0","outputValue":"EBC85C439A72062C703BC1DDFA8F7F55E7'
    "CD0E975962242FFBE4958252FCDF67B9723522464079C1F8A91C2C5596BF8A96EF0EF3652692A8E3FD4936"
    '01F59488"}}'
)


@pytest.fixture(scope="module")
def key() -> BeaconKey:
    """A 2048-bit key (the service makes 3072-bit ones; 2048 keeps the tests fast)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return BeaconKey(private, self_signed_certificate(private, "test beacon"))


@pytest.fixture(scope="module")
def other_key() -> BeaconKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return BeaconKey(private, self_signed_certificate(private, "forger"))


def nist() -> tuple[Pulse, Pulse, x509.Certificate]:
    certificate = x509.load_pem_x509_certificate(NIST_CERTIFICATE)
    first = Pulse.from_json(json.loads(NIST_PULSE_1921299))
    second = Pulse.from_json(json.loads(NIST_PULSE_1921300))
    return first, second, certificate


def append_to(store: MemoryLedger) -> AppendPulse:
    """Append a pulse as the transparency log does: one pulse entry, numbered by the store."""

    def append(chain: int, index: int, time_ms: int, leaf: bytes, document: bytes) -> Entry:
        def make(counters: Counters) -> list[Entry]:
            return [
                Entry(
                    leaf_index=counters.next_leaf,
                    kind="pulse",
                    created_at=time.time(),
                    leaf=leaf,
                    document=document,
                    chain_index=chain,
                    pulse_index=index,
                    time_ms=time_ms,
                )
            ]

        return store.append((), make)[0]

    return append


def publisher(
    store: MemoryLedger, pool: MemoryPool, key: BeaconKey, pool_key: bytes = b"k" * 32
) -> Publisher:
    return Publisher(
        store,
        append_to(store),
        pool,
        key,
        pool_key=pool_key,
        random_bytes=os.urandom,
        period=60,
        base_url="http://beacon.test",
    )


def stored(store: MemoryLedger) -> list[Pulse]:
    pulses = []
    for i in range(store.size()):
        pulse = stored_pulse(store.entry(i))
        assert pulse is not None
        pulses.append(pulse)
    return pulses


T0 = 1_788_328_800_000  # 2026-09-02T06:00:00.000Z, a period boundary


# -- the format against NIST's own pulses -------------------------------------------------


def test_the_serialization_reproduces_nists_signatures_and_output_values() -> None:
    first, second, certificate = nist()
    assert certificate_id(certificate) == second.certificate_id
    data = serialize(second)
    assert len(data) == 807
    assert hashlib.sha512(data).hexdigest() == (
        "004dac9a1541838da8030de6792adc56fa915fb24b3ec04b8ea36fede7c75d71"
        "03902c819c9301f5954588b325ea5769cf9e5ef1cc9bc3f3526899acd545f213"
    )
    assert verify_pulse(first, certificate) == []
    assert verify_pulse(second, certificate) == []
    assert output_value(data, second.signature_value) == second.output_value


def test_nists_consecutive_pulses_link_and_keep_their_precommitment() -> None:
    first, second, certificate = nist()
    failures = verify_chain([first, second], {certificate_id(certificate): certificate}.get)
    # NIST's chain 2 has gaps within it, so its day/month/year values name other pulses
    # than a gap-free chain would; those pulses are not given here either.
    assert {f.kind for f in failures} == {"list_value"}
    links = [f for f in failures if f.pulse_index == second.pulse_index and "previous" in f.detail]
    assert links == []


def test_the_json_round_trips_exactly_as_nist_serves_it() -> None:
    _, second, _ = nist()
    served = json.loads(NIST_PULSE_1921300)["pulse"]
    ours = second.to_json()
    assert list(ours) == list(served)
    assert ours == {**served, "certificateId": served["certificateId"].lower()}
    assert Pulse.from_json(json.loads(second.document())) == second


FIELDS = st.sampled_from(
    [
        "uri",
        "version",
        "period",
        "chain_index",
        "pulse_index",
        "time_stamp",
        "local_random_value",
        "external",
        "list_values",
        "precommitment_value",
        "status_code",
        "signature_value",
        "output_value",
    ]
)


def tampered(pulse: Pulse, name: str) -> Pulse:
    value: Any = getattr(pulse, name)
    changed: dict[str, Any]
    if name == "external":
        changed = {name: replace(pulse.external, status_code=1)}
    elif name == "list_values":
        changed = {name: (value[0], replace(value[1], value=bytes(64)), *value[2:])}
    elif name == "time_stamp":
        changed = {name: "2026-08-31T19:05:00.000Z"}
    elif isinstance(value, int):
        changed = {name: value + 1}
    elif isinstance(value, bytes):
        changed = {name: bytes([value[0] ^ 1]) + value[1:]}
    else:
        changed = {name: value + "x"}
    return replace(pulse, **changed)


@settings(max_examples=30, deadline=None)
@given(name=FIELDS)
def test_any_changed_field_of_a_nist_pulse_fails_verification(name: str) -> None:
    _, second, certificate = nist()
    assert verify_pulse(tampered(second, name), certificate) != []


def test_a_pulse_checked_against_another_certificate_fails(key: BeaconKey) -> None:
    _, second, _ = nist()
    kinds = {f.kind for f in verify_pulse(second, key.certificate)}
    assert kinds == {"certificate", "signature"}


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_time_stamps_round_trip(time_ms: int) -> None:
    text = format_time(time_ms)
    assert text.endswith("Z") and len(text) == 24
    assert parse_time(text) == time_ms


# -- signing ------------------------------------------------------------------------------


def test_our_pulses_verify_and_a_forged_signature_does_not(
    key: BeaconKey, other_key: BeaconKey, memory_pool: MemoryPool
) -> None:
    store = MemoryLedger()
    pulse = publisher(store, memory_pool, key).publish(T0)
    assert pulse is not None
    assert verify_pulse(pulse, key.certificate) == []
    forged = sign(replace(pulse, local_random_value=bytes(64)), other_key.private_key)
    assert {f.kind for f in verify_pulse(forged, key.certificate)} == {"signature"}


# -- the publisher and chains -------------------------------------------------------------


def test_pulses_chain_commit_to_the_next_value_and_a_gap_starts_a_new_chain(
    key: BeaconKey, memory_pool: MemoryPool
) -> None:
    store = MemoryLedger()
    beacon = publisher(store, memory_pool, key)
    for k in range(3):
        beacon.publish(T0 + k * 60_000)
    beacon.publish(T0 + 5 * 60_000)  # nothing at 3 and 4: the node was down
    beacon.publish(T0 + 6 * 60_000)
    pulses = stored(store)
    assert [(p.chain_index, p.pulse_index, p.status_code) for p in pulses] == [
        (1, 1, STATUS_NEW_CHAIN),
        (1, 2, STATUS_OK),
        (1, 3, STATUS_OK),
        (2, 1, STATUS_NEW_CHAIN),
        (2, 2, STATUS_OK),
    ]
    assert pulses[3].list_value("previous") == ListValue(
        "previous", "http://beacon.test/beacon/2.0/chain/2/pulse/0", bytes(64)
    )
    for before, after in [(pulses[0], pulses[1]), (pulses[1], pulses[2]), (pulses[3], pulses[4])]:
        assert hashlib.sha512(after.local_random_value).digest() == before.precommitment_value
    certificates = {key.certificate_id: key.certificate}.get
    assert verify_chain(pulses, certificates) == []
    assert beacon.publish(T0 + 6 * 60_000) is None  # already published


def test_another_node_continues_the_chain_from_the_sealed_value(
    key: BeaconKey, memory_pool: MemoryPool
) -> None:
    store = MemoryLedger()
    publisher(store, memory_pool, key).publish(T0)
    publisher(store, memory_pool, key).publish(T0 + 60_000)  # a new process, same pool key
    publisher(store, memory_pool, key, pool_key=b"x" * 32).publish(T0 + 120_000)
    pulses = stored(store)
    assert [(p.chain_index, p.pulse_index) for p in pulses] == [(1, 1), (1, 2), (2, 1)]
    assert verify_chain(pulses, {key.certificate_id: key.certificate}.get) == []
    assert memory_pool.read_record(next_record(pulses[0].precommitment_value)) is None  # spent
    assert memory_pool.read_record(next_record(pulses[2].precommitment_value)) is not None


def test_the_sealed_value_opens_only_for_its_commitment_and_key() -> None:
    value = os.urandom(64)
    commitment = hashlib.sha512(value).digest()
    sealed = seal_next(b"k" * 32, commitment, value)
    assert value not in sealed
    assert open_next(b"k" * 32, commitment, sealed) == value
    assert open_next(b"j" * 32, commitment, sealed) is None
    assert open_next(b"k" * 32, bytes(64), sealed) is None
    assert open_next(b"k" * 32, commitment, sealed[:-1] + bytes([sealed[-1] ^ 1])) is None


def test_a_second_publisher_of_the_same_pulse_is_refused(
    key: BeaconKey, memory_pool: MemoryPool
) -> None:
    store = MemoryLedger()
    first, second = publisher(store, memory_pool, key), publisher(store, memory_pool, key)
    first.publish(T0)
    second._next = None
    pulse = first.publish(T0 + 60_000)
    assert pulse is not None
    with pytest.raises(PulseExists):
        second.append(1, 2, T0 + 60_000, serialize(pulse), pulse.document())
    assert store.size() == 2


def chain_of(key: BeaconKey, pool: MemoryPool, count: int) -> list[Pulse]:
    store = MemoryLedger()
    beacon = publisher(store, pool, key)
    for k in range(count):
        beacon.publish(T0 + k * 60_000)
    return stored(store)


def test_a_broken_link_a_wrong_precommitment_and_a_forged_signature_are_each_found(
    key: BeaconKey, other_key: BeaconKey, memory_pool: MemoryPool
) -> None:
    pulses = chain_of(key, memory_pool, 4)
    certificates = {key.certificate_id: key.certificate}.get
    assert verify_chain(pulses, certificates) == []

    previous = pulses[2].list_values[0]
    relinked = replace(
        pulses[2], list_values=(replace(previous, value=bytes(64)), *pulses[2].list_values[1:])
    )
    broken = [*pulses[:2], sign(relinked, key.private_key), pulses[3]]
    found = verify_chain(broken, certificates)
    assert ("link", 3) in {(f.kind, f.pulse_index) for f in found}
    assert {f.kind for f in found} == {"link"}

    rerolled = sign(replace(pulses[2], local_random_value=os.urandom(64)), key.private_key)
    found = verify_chain([*pulses[:2], rerolled, pulses[3]], certificates)
    assert {(f.kind, f.pulse_index) for f in found} >= {("precommitment", 3)}

    forged = sign(replace(pulses[2], local_random_value=os.urandom(64)), other_key.private_key)
    found = verify_chain([*pulses[:2], forged, pulses[3]], certificates)
    assert ("signature", 3) in {(f.kind, f.pulse_index) for f in found}


def test_list_values_name_the_first_pulse_of_each_period(key: BeaconKey) -> None:
    minute = 60_000
    start = parse_time("2026-12-31T23:58:00.000Z")
    # pulse 1 at 23:58, 2 at 23:59, 3 at 00:00 (new year), 4 at 00:01
    assert expected_list_index("hour", 1, start, minute) is None
    assert expected_list_index("hour", 2, start + minute, minute) == 1
    assert expected_list_index("previous", 4, start + 3 * minute, minute) == 3
    for kind in ("hour", "day", "month", "year"):
        assert expected_list_index(kind, 3, start + 2 * minute, minute) == 1  # first of the last
        assert expected_list_index(kind, 4, start + 3 * minute, minute) == 3  # first of this one
    at_noon = parse_time("2026-06-15T12:30:00.000Z")
    index = 1 + (at_noon - parse_time("2026-06-15T09:00:00.000Z")) // minute
    assert expected_list_index("hour", index, at_noon, minute) == index - 30
    assert expected_list_index("day", index, at_noon, minute) == 1


def test_a_list_value_that_names_another_pulse_is_found(
    key: BeaconKey, memory_pool: MemoryPool
) -> None:
    pulses = chain_of(key, memory_pool, 3)
    hour = pulses[2].list_value("hour")
    assert hour is not None
    wrong = replace(hour, value=pulses[1].output_value)
    values = tuple(wrong if v.type == "hour" else v for v in pulses[2].list_values)
    changed = sign(replace(pulses[2], list_values=values), key.private_key)
    found = verify_chain([*pulses[:2], changed], {key.certificate_id: key.certificate}.get)
    assert {(f.kind, f.pulse_index) for f in found} == {("list_value", 3)}


# -- keys ---------------------------------------------------------------------------------


def test_the_key_is_made_once_owner_only_and_shared_by_every_process(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory")
    made = load_beacon_key(settings)
    again = load_beacon_key(settings)
    key_file = tmp_path / "beacon" / "key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert made.certificate_id == again.certificate_id
    assert made.private_key.key_size == 3072
    assert "PRIVATE" not in repr(made)


def test_a_given_key_and_certificate_are_used_and_must_match(
    tmp_path: Path, key: BeaconKey, other_key: BeaconKey
) -> None:
    key_file, cert_file = tmp_path / "key.pem", tmp_path / "cert.pem"
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    cert_file.write_text(key.certificate_pem)
    settings = make_settings(
        tmp_path, pool="memory", beacon_key_file=key_file, beacon_cert_file=cert_file
    )
    assert load_beacon_key(settings).certificate_id == key.certificate_id
    cert_file.write_text(other_key.certificate_pem)
    with pytest.raises(ConfigError, match="not for the beacon key"):
        load_beacon_key(settings)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=2_000_000_000),
    period=st.sampled_from([1_000, 60_000, 3_600_000]),
    index=st.integers(min_value=2, max_value=100_000),
    kind=st.sampled_from(["hour", "day", "month", "year"]),
)
def test_a_list_value_names_the_first_pulse_of_its_period(
    start: int, period: int, index: int, kind: str
) -> None:
    first_ms = start * 1000 - start * 1000 % period
    time_ms = first_ms + (index - 1) * period
    found = expected_list_index(kind, index, time_ms, period)
    assert found is not None and 1 <= found < index
    found_ms = first_ms + (found - 1) * period
    this_period = _period_start(kind, time_ms)
    if time_ms - period >= this_period:  # an earlier pulse of the chain is in this period
        start_of = this_period
    else:  # this pulse is the first of its period: the first of the period before
        start_of = _period_start(kind, this_period - 1)
    if first_ms >= start_of:
        assert found == 1
    else:
        assert found_ms >= start_of > found_ms - period
