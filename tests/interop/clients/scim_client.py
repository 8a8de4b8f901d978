"""Drives Gatehouse's SCIM 2.0 endpoints with a real SCIM client library (scim2-client over
httpx2): discovery, then create -> update -> group change -> deactivate, checking each answer
and the server's refusals (duplicate userName, stale ETag, unsupported filter).

Usage: scim_client.py ORIGIN   (the bearer token comes from GATEHOUSE_INTEROP_SCIM_TOKEN)
"""

import os
import sys
import uuid

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import PatchOp, PatchOperation, SCIMException, SearchRequest


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"scim-client: ok - {what}")


def main(origin):
    token = os.environ["GATEHOUSE_INTEROP_SCIM_TOKEN"]
    http = Client(base_url=f"{origin}/scim/v2", headers={"Authorization": f"Bearer {token}"})
    scim = SyncSCIMClient(http)
    scim.discover()
    config = http.get("/ServiceProviderConfig").json()
    check(config["patch"]["supported"] and config["etag"]["supported"], "discovery: PATCH and ETags supported")
    User = scim.get_resource_model("User")
    Group = scim.get_resource_model("Group")

    name = f"interop-{uuid.uuid4().hex[:8]}@example.com"
    user = scim.create(User(user_name=name, external_id=f"idp-{name}", display_name="Interop"))
    check(user.id and user.active is not False, "create: the user exists and is active")
    try:
        scim.create(User(user_name=name.upper()))
        check(False, "create: a duplicate userName is refused")
    except SCIMException as error:
        check(error.to_error().scim_type == "uniqueness", "create: a duplicate userName is refused (uniqueness)")

    found = scim.query(User, query_parameters=SearchRequest(filter=f'userName eq "{name}"'))
    check(found.total_results == 1 and found.resources[0].id == user.id, "query: filter userName eq")
    try:
        scim.query(User, query_parameters=SearchRequest(filter='userName co "interop"'))
        check(False, "query: an unsupported filter is refused")
    except SCIMException as error:
        check(error.to_error().scim_type == "invalidFilter", "query: an unsupported filter is invalidFilter")

    user.display_name = "Interop Updated"
    updated = scim.replace(user)
    check(updated.display_name == "Interop Updated", "update: PUT replaces the display name")
    check(updated.meta.version != user.meta.version, "update: the ETag moved")

    group = scim.create(Group(display_name=f"interop-eng-{uuid.uuid4().hex[:6]}"))
    add = PatchOp[Group](
        operations=[PatchOperation[Group](op="add", path="members", value=[{"value": user.id}])]
    )
    scim.modify(Group, group.id, add)
    member_of = scim.query(User, user.id)
    check(
        [entry.value for entry in member_of.groups or []] == [group.id],
        "group change: PATCH add members puts the user in the group",
    )
    remove = PatchOp[Group](
        operations=[PatchOperation[Group](op="remove", path=f'members[value eq "{user.id}"]')]
    )
    scim.modify(Group, group.id, remove)
    check(not scim.query(User, user.id).groups, "group change: PATCH remove members[value eq] takes it out")

    deactivate = PatchOp[User](
        operations=[PatchOperation[User](op="replace", path="active", value=False)]
    )
    scim.modify(User, user.id, deactivate)
    check(scim.query(User, user.id).active is False, "deactivate: PATCH replace active false")

    stale = http.put(
        f"/Users/{user.id}",
        headers={"If-Match": user.meta.version, "Content-Type": "application/scim+json"},
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name},
    )
    check(stale.status_code == 412, "a stale If-Match is refused with 412")

    scim.delete(User, user.id)
    scim.delete(Group, group.id)
    listed = scim.query(User, query_parameters=SearchRequest(filter=f'externalId eq "idp-{name}"'))
    check(listed.total_results == 0, "delete: the user is gone")
    print("scim-client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
