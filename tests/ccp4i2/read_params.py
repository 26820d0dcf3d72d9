"""Read PARAMS files (params.xml) with CCP4i2's own code and print, as JSON,
what CCP4i2 took from them.

Usage:
    python read_params.py DEF_XML PARAMS_XML [DEF_XML PARAMS_XML ...]

For each pair, the task's container is built from its definition (DEF_XML)
by CCP4i2's DefXmlParser, then the PARAMS file is overlaid onto it by
CCP4i2's ParamsXmlHandler.import_params_xml, exactly as CCP4i2 loads a job's
parameters (CPluginScript.loadDataFromXml). Prints one JSON array with, per
pair:

    params          the PARAMS file
    root            the root element's tag, namespace included
    task            the container's name (the definition's ccp4i2_body id)
    classes         "inputData.HKLIN" -> CCP4i2 class of each item
    values          "inputData.HKLIN.baseName" -> every value CCP4i2 holds
                    as set after the import, typed (numbers stay numbers);
                    files also get ".fullPath", from CCP4i2's getFullPath()
    unread          body elements that matched nothing in the container, so
                    the handler skipped them without a word
    roundtrip_diff  leaves whose text differs between the file and the
                    PARAMS file CCP4i2 itself writes from what it read
                    (ParamsXmlHandler.export_params_xml)
    header          the header read into CCP4i2's header class,
                    CI2XmlHeader, field by field (the handler itself skips
                    the header)
    header_errors   fields CI2XmlHeader could not take, with the error
    header_unknown  fields CI2XmlHeader has no slot for
    own_header_errors, own_header_unknown
                    the same for the header of CCP4i2's own PARAMS file, so
                    that a field CCP4i2 cannot read in its own files either
                    is told apart from a fault of the file under test
    printed         anything CCP4i2 printed (it prints its warnings, e.g.
                    "Warning: Error importing structured data")
    logged          CCP4i2's log records of level WARNING and above

Exits 1, with the traceback on stderr, when CCP4i2 fails to read a file.
Needs only the ccp4i2 package (no dependencies, no Django: without
DJANGO_SETTINGS_MODULE CCP4i2 resolves files from the PARAMS file alone).
"""

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import traceback
import xml.etree.ElementTree as ET

# With DJANGO_SETTINGS_MODULE set, CCP4i2 looks files up in its project
# database; the files under test must be read on their own.
os.environ.pop("DJANGO_SETTINGS_MODULE", None)

NAMESPACE = "http://www.ccp4.ac.uk/ccp4ns"

# Header fields CCP4i2 writes from the job's database record; the same
# values are handed to its writer so both headers carry the same fields.
JOB_METADATA_FIELDS = ("projectName", "projectId", "jobNumber", "jobId", "pluginName")


class Collect(logging.Handler):
    """Keeps CCP4i2's warnings and errors, tracebacks included."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []
        self.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))

    def emit(self, record):
        self.records.append(self.format(record))


def plain(value):
    """A JSON value for a CCP4i2 value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def walk_values(obj, path, values, classes):
    """Every set leaf below obj, by dotted path from the task's root."""
    from ccp4i2.core.base_object.base_classes import CContainer, CData, CDataFile

    kids = [c for c in obj.children() if isinstance(c, CData)]
    if isinstance(obj, CDataFile) and obj.isSet():
        values[path + ".fullPath"] = obj.getFullPath()
    if not kids:
        if obj.isSet(allowDefault=False):
            values[path] = plain(obj.value)
        return
    for kid in kids:
        kid_path = f"{path}.{kid.objectName()}" if path else kid.objectName()
        if isinstance(obj, CContainer):
            classes[kid_path] = type(kid).__name__
        walk_values(kid, kid_path, values, classes)


def unread_elements(elem, obj, path, out):
    """Elements that ParamsXmlHandler skips: it takes a child element only
    when the object has an attribute of that name."""
    from ccp4i2.core.base_object.base_classes import CData
    from ccp4i2.core.base_object.fundamental_types import CList

    for child in elem:
        child_path = f"{path}.{child.tag}" if path else child.tag
        attr = getattr(obj, child.tag, None)
        if not isinstance(attr, CData):
            out.append(child_path)
        elif len(child) and not isinstance(attr, CList):
            # List items are tagged by class, not by name, and always used.
            unread_elements(child, attr, child_path, out)


def leaves(elem, path="", out=None):
    """Non-empty leaf texts by dotted path (repeated tags get #n)."""
    out = {} if out is None else out
    seen = {}
    for child in elem:
        n = seen[child.tag] = seen.get(child.tag, 0) + 1
        tag = child.tag if n == 1 else f"{child.tag}#{n}"
        child_path = f"{path}.{tag}" if path else tag
        if len(child):
            leaves(child, child_path, out)
        elif child.text and child.text.strip():
            out[child_path] = child.text.strip()
    return out


def same_text(a, b):
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def read_header(header):
    """The header through CCP4i2's CI2XmlHeader, one field at a time so one
    bad field does not hide the rest."""
    from ccp4i2.core.base_object.base_classes import CData
    from ccp4i2.core.CCP4File import CI2XmlHeader

    h = CI2XmlHeader()
    values, errors, unknown = {}, {}, []
    for child in [] if header is None else header:
        field = getattr(h, child.tag, None)
        if not isinstance(field, CData):
            unknown.append(child.tag)
            continue
        try:
            field.setEtree(child)
        except Exception as e:  # reported, not hidden
            errors[child.tag] = f"{type(e).__name__}: {e}"
            continue
        values[child.tag] = plain(getattr(field, "value", None))
    return values, errors, unknown


def read_one(def_xml, params_xml, log):
    from ccp4i2.core.task_manager.def_xml_handler import DefXmlParser
    from ccp4i2.core.task_manager.params_xml_handler import ParamsXmlHandler

    result = {"params": params_xml}
    printed = io.StringIO()
    logged_before = len(log.records)
    # CCP4i2 prints its warnings on stdout, which carries the JSON: keep
    # them apart and report them.
    with contextlib.redirect_stdout(printed):
        task = DefXmlParser().parse_def_xml(def_xml)
        handler = ParamsXmlHandler()
        if not handler.import_params_xml(task, params_xml):
            sys.stderr.write(printed.getvalue())
            sys.stderr.write("\n".join(log.records[logged_before:]) + "\n")
            raise RuntimeError(f"CCP4i2's import_params_xml failed on {params_xml}")

        root = ET.parse(params_xml).getroot()
        body = root.find("ccp4i2_body")
        header = root.find("ccp4i2_header")
        result["root"] = root.tag
        result["task"] = task.objectName()

        values, classes = {}, {}
        walk_values(task, "", values, classes)
        result["values"] = values
        result["classes"] = classes

        unread = []
        if body is not None:
            unread_elements(body, task, "", unread)
        result["unread"] = unread

        (result["header"], result["header_errors"], result["header_unknown"]) = read_header(header)

        # CCP4i2 writes back what it read; any difference from the file
        # under test is a value CCP4i2 took differently.
        raw_header = {} if header is None else {c.tag: (c.text or "") for c in header}
        metadata = {k: raw_header[k] for k in JOB_METADATA_FIELDS if k in raw_header}
        with tempfile.TemporaryDirectory() as tmp:
            own_path = os.path.join(tmp, "params.xml")
            handler.export_params_xml(task, own_path, job_metadata=metadata)
            own = ET.parse(own_path).getroot()
        mine = leaves(body) if body is not None else {}
        theirs = leaves(own.find("ccp4i2_body"))
        result["roundtrip_diff"] = [
            {"path": p, "file": mine.get(p), "ccp4i2": theirs.get(p)}
            for p in sorted(set(mine) | set(theirs))
            if not same_text(mine.get(p), theirs.get(p))
        ]
        (_, result["own_header_errors"], result["own_header_unknown"]) = read_header(
            own.find("ccp4i2_header")
        )

    result["printed"] = printed.getvalue()
    result["logged"] = log.records[logged_before:]
    return result


def main(argv):
    if not argv or len(argv) % 2:
        sys.stderr.write(__doc__)
        return 2
    log = Collect()
    logging.getLogger().addHandler(log)
    logging.getLogger().setLevel(logging.WARNING)
    results = []
    for def_xml, params_xml in zip(argv[0::2], argv[1::2]):
        try:
            results.append(read_one(def_xml, params_xml, log))
        except Exception:  # the traceback is the report
            traceback.print_exc()
            return 1
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
