"""Writers of clinical ECG exports, for the tests of keras_ecg.data.ecg_formats.

GE MUSE XML, Philips Sierra XML, HL7 aECG and SCP-ECG are written here from
what their specifications (and ecgdatakit's parsers) say a device writes;
DICOM waveform files are written with pydicom and EDF+ files with edfio. Every
writer quantises a `(num_samples, num_leads)` signal in mV to the format's
integer samples and returns the quantum in mV, from which the tests take the
tolerance of the round trip.

- MUSE (restecg.dtd): one `<LeadData>` per lead, base64 little-endian int16
  `<WaveFormData>`, `LeadAmplitudeUnitsPerBit` 4.88 `MICROVOLTS`, a CRC32 per
  lead; MUSE stores the 8 independent leads.
- Sierra XML 1.04: `<parsedwaveforms>` base64 int16, leads one after the
  other, `resolution` 5 uV, uncompressed (`compressflag="False"`).
- HL7 aECG: a RHYTHM series, a `TIME_ABSOLUTE` GLIST (increment in s) and
  one `SLIST_PQ` sequence (origin, scale 2.5 uV, digits) per MDC lead code.
- SCP-ECG (EN 1064) v2.0: sections 0 (pointers), 1 (patient ID, device ID,
  date, time), 3 (lead definitions) and 6 (uncompressed int16 rhythm data,
  AVM 5000 nV, 2000 us interval), CRC-CCITT on the record and each section.
- DICOM: 12-Lead ECG Waveform Storage, one RHYTHM multiplex group, SS 16-bit,
  channel sensitivity 1 uV (UCUM), SCPECG lead codes.
- EDF+: edfio, "ECG <lead>" labels, physical dimension uV, 1 s data records.
"""

import base64
import binascii
import datetime
import struct
import textwrap
import zlib

import numpy as np

MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
MUSE_UV_PER_BIT = 4.88
SIERRA_UV_PER_BIT = 5.0
HL7_UV_PER_BIT = 2.5
SCP_NV_PER_BIT = 5000
DICOM_UV_PER_BIT = 1.25
EDF_UV_PER_BIT = 1.0


def _digits(signal_mv, uv_per_bit):
    """int16 samples `round(mV * 1000 / uV_per_bit)`; out of range is an error."""
    digital = np.round(np.asarray(signal_mv, np.float64) * 1000.0 / uv_per_bit)
    if np.abs(digital).max() > 32767:
        raise ValueError("signal out of the int16 range at this resolution")
    return digital.astype("<i2")


def _check(signal, leads):
    signal = np.asarray(signal, np.float64)
    if signal.ndim != 2 or signal.shape[1] != len(leads):
        raise ValueError(f"signal {signal.shape} does not match leads {leads}")
    return signal


# ----------------------------------------------------------------------------
# GE MUSE XML
# ----------------------------------------------------------------------------


def write_muse_xml(path, signal, fs, leads=MUSE_LEADS, uv_per_bit=MUSE_UV_PER_BIT):
    """A GE MUSE `RestingECG` export; returns the quantum in mV."""
    signal = _check(signal, leads)
    digital = _digits(signal, uv_per_bit)
    lead_xml = []
    for j, name in enumerate(leads):
        payload = digital[:, j].tobytes()
        text = "\n".join(textwrap.wrap(base64.b64encode(payload).decode(), 76))
        lead_xml.append(
            f"""<LeadData>
<LeadByteCountTotal>{len(payload)}</LeadByteCountTotal>
<LeadTimeOffset>0</LeadTimeOffset>
<LeadSampleCountTotal>{len(digital)}</LeadSampleCountTotal>
<LeadAmplitudeUnitsPerBit>{uv_per_bit}</LeadAmplitudeUnitsPerBit>
<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>
<LeadHighLimit>32767</LeadHighLimit>
<LeadLowLimit>-32768</LeadLowLimit>
<LeadID>{name}</LeadID>
<LeadOffsetFirstSample>0</LeadOffsetFirstSample>
<FirstSampleBaseline>0</FirstSampleBaseline>
<LeadSampleSize>2</LeadSampleSize>
<LeadOff>FALSE</LeadOff>
<BaselineSway>FALSE</BaselineSway>
<LeadDataCRC32>{zlib.crc32(payload) & 0xFFFFFFFF}</LeadDataCRC32>
<WaveFormData>{text}</WaveFormData>
</LeadData>"""
        )
    xml = f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE RestingECG SYSTEM "restecg.dtd">
<RestingECG>
<MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>
<PatientDemographics>
<PatientID>PTBXL</PatientID>
<PatientAge>56</PatientAge><AgeUnits>YEARS</AgeUnits>
<Gender>FEMALE</Gender>
</PatientDemographics>
<TestDemographics>
<DataType>RESTING</DataType>
<Site>1</Site>
<AcquisitionDevice>MAC55</AcquisitionDevice>
<Status>CONFIRMED</Status>
<AcquisitionTime>10:11:12</AcquisitionTime>
<AcquisitionDate>03-04-2021</AcquisitionDate>
</TestDemographics>
<Waveform>
<WaveformType>Rhythm</WaveformType>
<WaveformStartTime>0</WaveformStartTime>
<NumberofLeads>{len(leads)}</NumberofLeads>
<SampleType>CONTINUOUS_SAMPLES</SampleType>
<SampleBase>{int(fs)}</SampleBase>
<SampleExponent>0</SampleExponent>
<HighPassFilter>5</HighPassFilter>
<LowPassFilter>150</LowPassFilter>
<ACFilter>50</ACFilter>
{chr(10).join(lead_xml)}
</Waveform>
</RestingECG>
"""
    with open(path, "w", encoding="iso-8859-1", newline="\r\n") as f:
        f.write(xml)
    return uv_per_bit / 1000.0


# ----------------------------------------------------------------------------
# Philips Sierra XML
# ----------------------------------------------------------------------------


def write_sierra_xml(path, signal, fs, leads, uv_per_bit=SIERRA_UV_PER_BIT):
    """A Philips Sierra ECG XML 1.04 export (uncompressed); returns the quantum."""
    signal = _check(signal, leads)
    digital = _digits(signal, uv_per_bit)
    # Lead after lead: all samples of the first lead, then the next.
    payload = np.ascontiguousarray(digital.T).tobytes()
    text = "\n".join(textwrap.wrap(base64.b64encode(payload).decode(), 76))
    duration_ms = len(digital) * 1000 / fs
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<restingecgdata xmlns="http://www3.medical.philips.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <documentinfo>
    <documentname>ptbxl.xml</documentname>
    <documenttype>SierraECG</documenttype>
    <documentversion>1.04</documentversion>
  </documentinfo>
  <dataacquisition date="2021-03-04" time="10:11:12">
    <machine machineid="1" detaildescription="PageWriter TC70:860315">PageWriter TC70</machine>
    <signalcharacteristics>
      <samplingrate>{int(fs)}</samplingrate>
      <resolution>{uv_per_bit:g}</resolution>
      <acquisitiontype>STD-12</acquisitiontype>
      <bitspersample>16</bitspersample>
      <signaloffset>0</signaloffset>
      <signalsigned>True</signalsigned>
      <numberchannelsvalid>{len(leads)}</numberchannelsvalid>
      <numberchannelsallocated>{len(leads)}</numberchannelsallocated>
    </signalcharacteristics>
  </dataacquisition>
  <patient>
    <generalpatientdata>
      <patientid>PTBXL</patientid>
      <age><years>56</years></age>
      <sex>Female</sex>
    </generalpatientdata>
  </patient>
  <waveforms>
    <parsedwaveforms durationperchannel="{duration_ms:g}" samplespersecond="{int(fs)}" resolution="{uv_per_bit:g}" signalsigned="True" leadlabels="{" ".join(leads)}" numberofleads="{len(leads)}" dataencoding="Base64" compressflag="False" compressmethod="XLI">
{text}
    </parsedwaveforms>
  </waveforms>
</restingecgdata>
"""  # noqa: E501
    with open(path, "w", encoding="utf-8") as f:
        f.write(xml)
    return uv_per_bit / 1000.0


# ----------------------------------------------------------------------------
# HL7 aECG
# ----------------------------------------------------------------------------


def _mdc(lead):
    return "MDC_ECG_LEAD_" + lead.upper()


def write_hl7_aecg(path, signal, fs, leads, uv_per_bit=HL7_UV_PER_BIT):
    """An HL7 v3 Annotated ECG (FDA aECG) file; returns the quantum in mV."""
    signal = _check(signal, leads)
    digital = _digits(signal, uv_per_bit)
    sequences = [
        f"""<component><sequence>
  <code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>
  <value xsi:type="GLIST_TS"><head value="20210304101112.000"/><increment value="{1 / fs:.6g}" unit="s"/></value>
</sequence></component>"""  # noqa: E501
    ]
    for j, name in enumerate(leads):
        digits = " ".join(str(v) for v in digital[:, j].tolist())
        sequences.append(
            f"""<component><sequence>
  <code code="{_mdc(name)}" codeSystem="2.16.840.1.113883.6.24" codeSystemName="MDC"/>
  <value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="{uv_per_bit:g}" unit="uV"/>
  <digits>{digits}</digits></value>
</sequence></component>"""  # noqa: E501
        )
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <id root="2.16.840.1.113883.3.1"/>
  <code code="93000" codeSystem="2.16.840.1.113883.6.12" codeSystemName="CPT-4"/>
  <effectiveTime><low value="20210304101112"/><high value="20210304101122"/></effectiveTime>
  <component><series>
    <id root="2.16.840.1.113883.3.2"/>
    <code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>
    <effectiveTime><low value="20210304101112"/><high value="20210304101122"/></effectiveTime>
    <component><sequenceSet>
{chr(10).join(sequences)}
    </sequenceSet></component>
  </series></component>
</AnnotatedECG>
"""  # noqa: E501
    with open(path, "w", encoding="utf-8") as f:
        f.write(xml)
    return uv_per_bit / 1000.0


# ----------------------------------------------------------------------------
# SCP-ECG
# ----------------------------------------------------------------------------

# Section 3 lead codes (EN 1064 table 8).
SCP_LEAD_CODES = {
    "I": 1,
    "II": 2,
    "V1": 3,
    "V2": 4,
    "V3": 5,
    "V4": 6,
    "V5": 7,
    "V6": 8,
    "III": 61,
    "aVR": 62,
    "aVL": 63,
    "aVF": 64,
}
_SCP_VERSION = 20  # SCP-ECG 2.0


def _crc_ccitt(data):
    """CRC-CCITT (polynomial 0x1021, initial value 0xFFFF), SCP-ECG's CRC."""
    return binascii.crc_hqx(data, 0xFFFF)


def _scp_section(section_id, body):
    """A section: 16-byte header (CRC, ID, length, versions, "SCPECG") + body."""
    if len(body) % 2:
        body += b"\x00"  # section lengths are even
    length = 16 + len(body)
    header = struct.pack("<HIBB6s", section_id, length, 20, 20, b"SCPECG")
    content = header + body
    return struct.pack("<H", _crc_ccitt(content)) + content


def _scp_tag(tag, value):
    return struct.pack("<BH", tag, len(value)) + value


def _scp_section1():
    """Patient ID (2), acquiring device (14), date (25), time (26), end (255)."""
    device = struct.pack(
        "<HHHBB6sBBBBB16sB",
        1,  # institution number
        1,  # department number
        7,  # device ID
        0,  # device type: cart
        255,  # manufacturer: other (named in the strings below)
        b"TEST\x00\x00",  # model description
        _SCP_VERSION,  # protocol revision
        0xA0,  # compatibility level: category I
        0,  # language: 8-bit ASCII
        0,  # capabilities
        1,  # mains frequency 50 Hz
        b"\x00" * 16,  # reserved
        2,  # length of the analysis program revision string
    )
    device += b"1\x00" + b"SN123\x00" + b"1.0\x00" + b"keras-ecg tests\x00"
    device += b"keras-ecg\x00"
    tags = _scp_tag(2, b"PTBXL\x00")
    tags += _scp_tag(14, device)
    tags += _scp_tag(25, struct.pack("<HBB", 2021, 3, 4))
    tags += _scp_tag(26, struct.pack("<BBB", 10, 11, 12))
    tags += _scp_tag(255, b"")
    return tags


def write_scp_ecg(path, signal, fs, leads=MUSE_LEADS, nv_per_bit=SCP_NV_PER_BIT):
    """An uncompressed SCP-ECG 2.0 record; returns the quantum in mV."""
    signal = _check(signal, leads)
    digital = _digits(signal, nv_per_bit / 1000.0)
    num_samples, num_leads = digital.shape
    # Section 3: all leads recorded simultaneously, no reference beat
    # subtraction; each lead spans samples 1..N.
    section3 = struct.pack("<BB", num_leads, 0x04 | (num_leads << 3))
    for name in leads:
        section3 += struct.pack("<IIB", 1, num_samples, SCP_LEAD_CODES[name])
    # Section 6: AVM (nV), sample interval (us), no difference encoding,
    # no bimodal compression, bytes per lead, then the int16 samples.
    interval_us = int(round(1e6 / fs))
    section6 = struct.pack("<HHBB", nv_per_bit, interval_us, 0, 0)
    section6 += struct.pack(f"<{num_leads}H", *([2 * num_samples] * num_leads))
    section6 += np.ascontiguousarray(digital.T).tobytes()
    bodies = {1: _scp_section1(), 3: section3, 6: section6}
    sections = {sid: _scp_section(sid, body) for sid, body in bodies.items()}
    # Section 0 points to sections 0-11 (absent ones with length 0).
    section0_length = 16 + 12 * 10
    offset = 6 + section0_length  # bytes before the next section
    pointers = b""
    placed = []
    for sid in range(12):
        if sid == 0:
            pointers += struct.pack("<HII", 0, section0_length, 7)
        elif sid in sections:
            pointers += struct.pack("<HII", sid, len(sections[sid]), offset + 1)
            placed.append(sections[sid])
            offset += len(sections[sid])
        else:
            pointers += struct.pack("<HII", sid, 0, 0)
    data = _scp_section(0, pointers) + b"".join(placed)
    size = 6 + len(data)
    record = struct.pack("<I", size) + data
    with open(path, "wb") as f:
        f.write(struct.pack("<H", _crc_ccitt(record)) + record)
    return nv_per_bit / 1e6


# ----------------------------------------------------------------------------
# DICOM waveform (pydicom) and EDF+ (edfio)
# ----------------------------------------------------------------------------


def write_dicom_ecg(
    path, signal, fs, leads, uv_per_bit=DICOM_UV_PER_BIT, padding_at=None
):
    """A DICOM 12-Lead ECG Waveform Storage file; returns the quantum in mV.

    `padding_at`: optional `(row, column)` indices set to the Waveform Padding
    Value (-32768): samples a device marks as missing.
    """
    from pydicom.dataset import Dataset
    from pydicom.dataset import FileDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    from pydicom.uid import generate_uid

    signal = _check(signal, leads)
    digital = _digits(signal, uv_per_bit)
    if padding_at is not None:
        digital[padding_at] = -32768
    sop_class = "1.2.840.10008.5.1.4.1.1.9.1.1"  # 12-Lead ECG Waveform Storage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "ECG"
    ds.Manufacturer = "keras-ecg tests"
    ds.PatientName = "PTBXL^Test"
    ds.PatientID = "PTBXL"
    ds.PatientSex = "F"
    ds.AcquisitionDateTime = "20210304101112"
    ds.ContentDate = "20210304"
    ds.ContentTime = "101112"
    channels = []
    for name in leads:
        source = Dataset()
        source.CodeValue = f"5.6.3-9-{SCP_LEAD_CODES[name]}"
        source.CodingSchemeDesignator = "SCPECG"
        source.CodingSchemeVersion = "1.3"
        source.CodeMeaning = f"Lead {name}"
        unit = Dataset()
        unit.CodeValue = "uV"
        unit.CodingSchemeDesignator = "UCUM"
        unit.CodeMeaning = "microvolt"
        channel = Dataset()
        channel.ChannelSourceSequence = [source]
        channel.ChannelSensitivity = f"{uv_per_bit:g}"
        channel.ChannelSensitivityUnitsSequence = [unit]
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.ChannelSampleSkew = "0"
        channel.WaveformBitsStored = 16
        channel.FilterLowFrequency = "0.05"
        channel.FilterHighFrequency = "150"
        channels.append(channel)
    group = Dataset()
    group.MultiplexGroupTimeOffset = "0"
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(leads)
    group.NumberOfWaveformSamples = len(digital)
    group.SamplingFrequency = f"{fs:g}"
    group.MultiplexGroupLabel = "RHYTHM"
    group.ChannelDefinitionSequence = channels
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.WaveformPaddingValue = struct.pack("<h", -32768)
    # Multiplexed: sample by sample, every channel of a sample in turn.
    group.WaveformData = np.ascontiguousarray(digital).tobytes()
    ds.WaveformSequence = [group]
    ds.save_as(str(path), enforce_file_format=True)
    return uv_per_bit / 1000.0


def write_edf_plus(path, signal, fs, leads, rates=None):
    """An EDF+ file of the leads in uV (1 uV per count); returns the quantum.

    `rates`: optional per-lead sampling rates (EDF allows one per signal);
    a lead at another rate than `fs` keeps every `fs / rate`-th sample.
    """
    import edfio

    signal = _check(signal, leads)
    uv = np.round(signal * 1000.0)
    signals = []
    for j, name in enumerate(leads):
        rate = fs if rates is None else rates[j]
        data = uv[:: int(round(fs / rate)), j]
        signals.append(
            edfio.EdfSignal(
                data,
                sampling_frequency=rate,
                label=f"ECG {name}",
                transducer_type="AgAgCl electrode",
                physical_dimension="uV",
                physical_range=(-32768, 32767),
                digital_range=(-32768, 32767),
                prefiltering="HP:0.05Hz LP:150Hz",
            )
        )
    edf = edfio.Edf(
        signals,
        patient=edfio.Patient(code="PTBXL", sex="F"),
        recording=edfio.Recording(startdate=datetime.date(2021, 3, 4)),
        starttime=datetime.time(10, 11, 12),
        data_record_duration=1.0,
    )
    edf.write(str(path))
    return EDF_UV_PER_BIT / 1000.0


# ----------------------------------------------------------------------------
# One entry point for the tests
# ----------------------------------------------------------------------------

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
STANDARD_LEADS += ("V1", "V2", "V3", "V4", "V5", "V6")
# format -> (file name, writer, the leads a device stores in it)
EXPORTS = {
    "GE MUSE XML": ("muse.xml", write_muse_xml, MUSE_LEADS),
    "Philips Sierra XML": ("sierra.xml", write_sierra_xml, STANDARD_LEADS),
    "HL7 aECG": ("aecg.xml", write_hl7_aecg, STANDARD_LEADS),
    "DICOM Waveform": ("ecg.dcm", write_dicom_ecg, STANDARD_LEADS),
    "EDF/EDF+": ("ecg.edf", write_edf_plus, STANDARD_LEADS),
    "SCP-ECG": ("ecg.scp", write_scp_ecg, MUSE_LEADS),
}


def write_export(fmt, path, signal, fs, leads=None):
    """Writes the 12-lead `signal` (standard order, mV) as `fmt` to `path`.

    Returns `(quantum_mv, stored_leads)`; `leads` overrides the leads stored.
    """
    _, writer, stored = EXPORTS[fmt]
    stored = tuple(stored if leads is None else leads)
    columns = [STANDARD_LEADS.index(name) for name in stored]
    quantum = writer(path, np.asarray(signal)[:, columns], fs, stored)
    return quantum, stored
