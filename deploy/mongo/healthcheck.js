// compose.yaml's MongoDB healthcheck (mongosh --file): initiate the one-node replica
// set `rs0` the first time, then report healthy only while this node is primary.
// Authenticates as root with the secret file: no password on a command line.
const fs = require("fs");
const admin = db.getSiblingDB("admin");
admin.auth("root", fs.readFileSync("/run/secrets/mongo_root_password", "utf8").trim());
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  // `mongo` is the compose service name every container resolves.
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
}
if (!admin.runCommand({ hello: 1 }).isWritablePrimary) {
  quit(1);
}
