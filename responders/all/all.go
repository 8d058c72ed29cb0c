// Package all links every built-in responder into a binary. A custom build
// imports the responder packages it wants instead (or this package plus its
// own).
package all
