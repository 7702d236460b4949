"""Canary scan (DESIGN.md invariant 1) over data written by batches, transactions and PartiQL (issue 6)."""

from __future__ import annotations

import base64
import uuid

from tests.canary import scan
from tests.conftest import make_table

TAG = uuid.uuid4().hex[:10]
BATCH = f"batchcanary{TAG}"
TX_PUT = f"txputcanary{TAG}"
TX_UPD = f"txupdcanary{TAG}"
PQL_INS = f"pqlinscanary{TAG}"
PQL_UPD = f"pqlupdcanary{TAG}"
KEY = f"keycanary{TAG}"
BINARY = f"bincanary{TAG}".encode()


def test_no_plaintext_at_rest_from_multi_item_writes(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, log_file="")
    account = "650000000001"
    ddb = srv.client("dynamodb", access_key=account)
    kms = srv.client("kms", access_key=account)
    key = kms.create_key()["KeyMetadata"]
    tables = []
    for label, sse in [("owned", None), ("managed", {"Enabled": True}),
                       ("customer", {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})]:
        name = f"{unique_name}-{label}"
        make_table(ddb, name, sse=sse)
        tables.append(name)
    for t in tables:
        ddb.batch_write_item(RequestItems={t: [
            {"PutRequest": {"Item": {"pk": {"S": f"{KEY}-b{i}"}, "v": {"S": BATCH},
                                     "bin": {"B": BINARY}}}} for i in range(5)]})
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": {"pk": {"S": f"{KEY}-t"}, "v": {"S": TX_PUT}}}},
            {"Update": {"TableName": t, "Key": {"pk": {"S": f"{KEY}-b0"}}, "UpdateExpression": "SET u = :u",
                        "ExpressionAttributeValues": {":u": {"S": TX_UPD}}}},
        ])
        ddb.execute_statement(Statement=f"INSERT INTO \"{t}\" VALUE {{'pk': '{KEY}-p', 'v': '{PQL_INS}'}}")
        ddb.execute_transaction(TransactStatements=[
            {"Statement": f"UPDATE \"{t}\" SET w = ? WHERE pk = '{KEY}-b1'", "Parameters": [{"S": PQL_UPD}]}])
        ddb.batch_write_item(RequestItems={t: [{"DeleteRequest": {"Key": {"pk": {"S": f"{KEY}-b4"}}}}]})
        # the data is really there, readable through the API
        got = ddb.batch_get_item(RequestItems={t: {"Keys": [{"pk": {"S": f"{KEY}-b0"}}, {"pk": {"S": f"{KEY}-b1"}}]}})
        values = {i["pk"]["S"]: i for i in got["Responses"][t]}
        assert values[f"{KEY}-b0"]["u"]["S"] == TX_UPD and values[f"{KEY}-b1"]["w"]["S"] == PQL_UPD
        assert ddb.execute_statement(Statement=f"SELECT v FROM \"{t}\" WHERE pk = '{KEY}-p'")["Items"] == [
            {"v": {"S": PQL_INS}}]
    assert srv.stop() == 0
    canaries = [BATCH, TX_PUT, TX_UPD, PQL_INS, PQL_UPD, KEY, BINARY, base64.b64encode(BINARY).decode()]
    hits = scan([srv.data_dir, srv.log_path], canaries)
    assert hits == []
    assert not any(c in srv.log_text() for c in canaries if isinstance(c, str))
