// The XOAUTH2 initial client response (reference §3): base64 of
// "user=<mailbox>\x01auth=Bearer <token>\x01\x01". `user` is the mailbox to
// send from (a shared mailbox for delegates), the token is the signed-in
// user's or the app's. The result is a secret: never log it.

export function buildXoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, 'utf8').toString('base64');
}
