// compose.yaml's MongoDB, first start only (the image runs /docker-entrypoint-initdb.d/
// once, when the data volume is empty): the `slurp` user, readWrite on SLURP_MONGO_DB,
// with the password of the secret mongo_slurp_password. slurp connects as this user
// (the URL in the secret slurp_mongo_url); root stays for administration.
const fs = require("fs");
const password = fs.readFileSync("/run/secrets/mongo_slurp_password", "utf8").trim();
const database = process.env.SLURP_MONGO_DB || "slurp";
db.getSiblingDB("admin").createUser({
  user: "slurp",
  pwd: password,
  roles: [{ role: "readWrite", db: database }],
});
