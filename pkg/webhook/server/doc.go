// Package server runs the admission webhook: flags into Options, Options
// into a Config (clients, informers, clone authorizer), and Config.Run
// serving HTTPS with certificates reloaded from their files.
package server
