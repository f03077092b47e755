// Send one message with nodemailer: STARTTLS (required), then a login, as a production app would.
//
//   smtp-sink serve --auth accept-any
//   cd examples/nodemailer && npm install
//   NODE_EXTRA_CA_CERTS=../../mail/tls/ca.pem node send.js [recipient]
//
// Settings come from the environment: SMTP_HOST (localhost), SMTP_PORT (2525; 2465 with
// SMTP_TLS=implicit), SMTP_TLS (starttls | implicit | off), SMTP_USER (app@example.test; empty:
// no login), SMTP_PASSWORD (secret). nodemailer verifies the certificate: trust smtp-sink's
// generated ca.pem with NODE_EXTRA_CA_CERTS (or `tls: { ca: fs.readFileSync(".../ca.pem") }`).
"use strict";

const nodemailer = require("nodemailer");

function settings(env) {
  const tls = (env.SMTP_TLS || "starttls").toLowerCase();
  if (!["starttls", "implicit", "off"].includes(tls)) {
    throw new Error(`SMTP_TLS must be starttls, implicit or off, not '${tls}'`);
  }
  const port = env.SMTP_PORT || (tls === "implicit" ? "2465" : "2525");
  if (!/^\d+$/.test(port)) {
    throw new Error(`SMTP_PORT must be a port number, not '${port}'`);
  }
  const user = env.SMTP_USER === undefined ? "app@example.test" : env.SMTP_USER;
  return {
    host: env.SMTP_HOST || "localhost",
    port: Number(port),
    secure: tls === "implicit", // implicit TLS from the first byte
    requireTLS: tls === "starttls", // STARTTLS or fail, never plaintext
    ignoreTLS: tls === "off",
    auth: user ? { user, pass: env.SMTP_PASSWORD === undefined ? "secret" : env.SMTP_PASSWORD } : undefined,
    connectionTimeout: 10000,
  };
}

async function main() {
  let options;
  try {
    options = settings(process.env);
  } catch (err) {
    console.error(`nodemailer send: ${err.message}`);
    return 2;
  }
  const to = process.argv[2] || "ann@example.test";
  try {
    const info = await nodemailer.createTransport(options).sendMail({
      from: '"App" <app@example.test>',
      to,
      subject: "Hello from nodemailer",
      text: "Sent by examples/nodemailer/send.js.\n",
    });
    console.log(`nodemailer send: sent to ${to} through ${options.host}:${options.port}: ${info.response}`);
    return 0;
  } catch (err) {
    const hint = /certificate/i.test(err.message)
      ? " (trust smtp-sink's certificate with NODE_EXTRA_CA_CERTS=<store>/tls/ca.pem)"
      : "";
    console.error(`nodemailer send: cannot send through ${options.host}:${options.port}: ${err.message}${hint}`);
    return 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
