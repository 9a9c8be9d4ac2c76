// Start the telegram-test-api Bot API emulator on 127.0.0.1 for Reeve's tests.
// Usage: node start_emulator.js [port]
// Port 0 (the default) picks a free port; the emulator itself treats 0 as 9000.
// Prints one JSON line {"port": N, "url": "http://127.0.0.1:N"} once it listens.
const net = require('net');
const TelegramServer = require('telegram-test-api');

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function main() {
  const wanted = Number(process.argv[2] || 0);
  const port = wanted || (await freePort());
  const server = new TelegramServer({ port, host: '127.0.0.1' });
  await server.start();
  console.log(JSON.stringify({ port, url: `http://127.0.0.1:${port}` }));
  const stop = () => server.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
